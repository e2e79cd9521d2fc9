"""ledger invoices: the effective dates of their first and last movements

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 08:05:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('ledger_invoices', sa.Column('first_effective', sa.Date(), nullable=True))
    op.add_column('ledger_invoices', sa.Column('last_effective', sa.Date(), nullable=True))
    # every invoice has at least its issue movement
    op.execute(
        "UPDATE ledger_invoices SET first_effective = span.first_effective, "
        "last_effective = span.last_effective "
        "FROM (SELECT invoice_id, min(effective_date) AS first_effective, "
        "max(effective_date) AS last_effective FROM ledger_movements "
        "WHERE invoice_id IS NOT NULL GROUP BY invoice_id) AS span "
        "WHERE span.invoice_id = ledger_invoices.invoice_id"
    )
    with op.batch_alter_table('ledger_invoices') as batch:
        batch.alter_column('first_effective', existing_type=sa.Date(), nullable=False)
        batch.alter_column('last_effective', existing_type=sa.Date(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('ledger_invoices') as batch:
        batch.drop_column('last_effective')
        batch.drop_column('first_effective')
