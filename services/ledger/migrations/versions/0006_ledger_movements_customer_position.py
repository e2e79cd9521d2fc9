"""ledger movements by customer in the order recorded, covering what the payment predictions read

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:30:00
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_INCLUDED = ['invoice_id', 'kind', 'open_delta', 'disputed_delta', 'effective_date', 'recorded_at']


def upgrade() -> None:
    op.create_index('ix_ledger_movements_customer_position', 'ledger_movements', ['customer_id', 'position', 'id'],
                    postgresql_include=_INCLUDED)


def downgrade() -> None:
    op.drop_index('ix_ledger_movements_customer_position', 'ledger_movements')
