"""dunning accounts: the collector who works the customer, and by what

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 08:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (existing accounts have none until a rule or a person assigns one)
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.add_column(sa.Column('collector_id', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('assigned_by', sa.String(length=10), nullable=True))
        batch.create_index('ix_dunning_accounts_collector_id', ['collector_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.drop_index('ix_dunning_accounts_collector_id')
        batch.drop_column('assigned_by')
        batch.drop_column('collector_id')
