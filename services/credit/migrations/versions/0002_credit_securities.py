"""credit securities: every security of a customer, for the release and draw routes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 14:55:00
"""
import sqlalchemy as sa
from alembic import op

import shared.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_securities',
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('security_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('amount', shared.db.Money(), nullable=True),
    sa.Column('drawn', shared.db.Money(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('released_on', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'security_id')
    )
    op.create_index('ix_credit_securities_security_id', 'credit_securities', ['security_id'])


def downgrade() -> None:
    op.drop_index('ix_credit_securities_security_id', 'credit_securities')
    op.drop_table('credit_securities')
