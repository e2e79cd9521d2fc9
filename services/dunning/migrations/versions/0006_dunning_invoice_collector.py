"""dunning invoices: the customer's collector, indexed for one collector's worklist

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dunning_invoices') as batch:
        batch.add_column(sa.Column('collector_id', sa.String(length=200), nullable=True))
    op.execute("UPDATE dunning_invoices SET collector_id = (SELECT a.collector_id FROM dunning_accounts a "
               "WHERE a.customer_id = dunning_invoices.customer_id)")
    dunnable = sa.text('open_amount > disputed_amount')
    op.create_index('ix_dunning_invoices_collector_worklist', 'dunning_invoices',
                    ['collector_id', 'due_date', 'customer_id', 'currency', 'open_amount', 'disputed_amount',
                     'level', 'escalated'],
                    unique=False, postgresql_where=dunnable, sqlite_where=dunnable)


def downgrade() -> None:
    op.drop_index('ix_dunning_invoices_collector_worklist', table_name='dunning_invoices')
    with op.batch_alter_table('dunning_invoices') as batch:
        batch.drop_column('collector_id')
