"""credit warnings: every early warning with its evidence, for /warnings and /watchlist

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 14:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_warnings',
    sa.Column('warning_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('signal', sa.String(length=40), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('hold', sa.Boolean(), nullable=False),
    sa.Column('raised_on', sa.Date(), nullable=False),
    sa.Column('cleared_on', sa.Date(), nullable=True),
    sa.Column('acknowledgements', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('warning_id')
    )
    op.create_index('ix_credit_warnings_status', 'credit_warnings', ['status', 'customer_id'])
    op.create_index('ix_credit_warnings_customer_id', 'credit_warnings', ['customer_id'])


def downgrade() -> None:
    op.drop_index('ix_credit_warnings_customer_id', 'credit_warnings')
    op.drop_index('ix_credit_warnings_status', 'credit_warnings')
    op.drop_table('credit_warnings')
