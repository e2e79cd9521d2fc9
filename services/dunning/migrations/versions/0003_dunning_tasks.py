"""dunning tasks: a collector's calls and visits, created by the runs' notices

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 09:05:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dunning_tasks',
        sa.Column('task_id', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('notice_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('collector_id', sa.String(length=200), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.Column('note', sa.String(length=2000), nullable=True),
        sa.Column('completed_on', sa.Date(), nullable=True),
        sa.Column('completed_by', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('task_id'),
    )
    with op.batch_alter_table('dunning_tasks') as batch:
        batch.create_index('ix_dunning_tasks_customer_id', ['customer_id'], unique=False)
        batch.create_index('ix_dunning_tasks_collector_status', ['collector_id', 'status', 'due_on'],
                           unique=False)


def downgrade() -> None:
    op.drop_table('dunning_tasks')
