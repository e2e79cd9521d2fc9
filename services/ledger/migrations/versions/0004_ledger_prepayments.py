"""ledger prepayments: the requests, the payments held for them, and a movement's reference

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 14:10:00
"""
import sqlalchemy as sa
from alembic import op

import shared.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_prepayments',
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', shared.db.Money(), nullable=False),
    sa.Column('requested_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('order_id', sa.String(length=200), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_date', sa.Date(), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=4000), nullable=True),
    sa.PrimaryKeyConstraint('customer_id', 'request_id')
    )
    op.create_index('ix_ledger_prepayments_request_id', 'ledger_prepayments', ['request_id'])
    op.create_table('ledger_prepayment_credits',
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('credit', sa.String(length=220), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'credit')
    )
    op.create_index('ix_ledger_prepayment_credits_request_id', 'ledger_prepayment_credits', ['request_id'])
    op.add_column('ledger_movements', sa.Column('reference', sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column('ledger_movements', 'reference')
    op.drop_index('ix_ledger_prepayment_credits_request_id', 'ledger_prepayment_credits')
    op.drop_table('ledger_prepayment_credits')
    op.drop_index('ix_ledger_prepayments_request_id', 'ledger_prepayments')
    op.drop_table('ledger_prepayments')
