"""ledger replays: the audit record of every replay of the read models

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 05:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_replays',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('via', sa.String(length=20), nullable=False),
    sa.Column('verify', sa.Boolean(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('position', sa.BigInteger(), nullable=True),
    sa.Column('events', sa.BigInteger(), nullable=True),
    sa.Column('milliseconds', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.String(length=2000), nullable=True),
    sa.PrimaryKeyConstraint('run_id')
    )


def downgrade() -> None:
    op.drop_table('ledger_replays')
