"""dunning KPI entries: the rows the collectors' KPIs are summed from

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:20:00
"""
import sqlalchemy as sa
from alembic import op

import shared.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (filled by the projector from the events; ``receivables replay`` rebuilds it for an old store)
    op.create_table(
        'dunning_kpi_entries',
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('collector_id', sa.String(length=200), nullable=True),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('amount', shared.db.Money(), nullable=True),
        sa.Column('on_date', sa.Date(), nullable=False),
        sa.Column('invoice_id', sa.String(length=200), nullable=True),
        sa.Column('due_date', sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint('position', 'seq'),
    )
    with op.batch_alter_table('dunning_kpi_entries') as batch:
        batch.create_index('ix_dunning_kpi_entries_kind_date', ['kind', 'on_date'], unique=False)
        batch.create_index('ix_dunning_kpi_entries_customer', ['customer_id', 'kind'], unique=False)


def downgrade() -> None:
    op.drop_table('dunning_kpi_entries')
