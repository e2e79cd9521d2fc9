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
                    ['collector_id', 'customer_id', 'currency', 'due_date', 'open_amount', 'disputed_amount',
                     'level', 'escalated'],
                    unique=False, postgresql_where=dunnable, sqlite_where=dunnable)
    if op.get_bind().dialect.name == 'postgresql':
        # a worklist reads the index alone only where the visibility map is fresh: runs and
        # payments rewrite invoice rows all day, so autovacuum comes after 1% of them, not 20%
        op.execute("ALTER TABLE dunning_invoices SET (autovacuum_vacuum_scale_factor = 0.01, "
                   "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE dunning_invoices RESET (autovacuum_vacuum_scale_factor, "
                   "autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor)")
    op.drop_index('ix_dunning_invoices_collector_worklist', table_name='dunning_invoices')
    with op.batch_alter_table('dunning_invoices') as batch:
        batch.drop_column('collector_id')
