"""dunning statements of account and the customers' answers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 12:00:00
"""
import sqlalchemy as sa
from alembic import op

from shared.db import Money

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dunning_statements',
        sa.Column('statement_id', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('closing_balance', Money(), nullable=False),
        sa.Column('confirmation_requested', sa.Boolean(), nullable=False),
        sa.Column('response', sa.String(length=10), nullable=True),
        sa.Column('responded_on', sa.Date(), nullable=True),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('statement_id'),
    )
    op.create_index('ix_dunning_statements_customer_id', 'dunning_statements', ['customer_id'], unique=False)
    op.create_index('ix_dunning_statements_as_of', 'dunning_statements', ['as_of'], unique=False)
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.add_column(sa.Column('balance_disputed_on', sa.Date(), nullable=True))
        batch.add_column(sa.Column('name', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('language', sa.String(length=2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dunning_accounts') as batch:
        for name in ('language', 'name', 'balance_disputed_on'):
            batch.drop_column(name)
    op.drop_index('ix_dunning_statements_as_of', table_name='dunning_statements')
    op.drop_index('ix_dunning_statements_customer_id', table_name='dunning_statements')
    op.drop_table('dunning_statements')
