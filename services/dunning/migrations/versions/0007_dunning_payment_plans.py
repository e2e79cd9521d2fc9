"""dunning payment plans: the plans, and each account's open plan and plan counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 11:30:00
"""
import sqlalchemy as sa
from alembic import op

from shared.db import Money

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dunning_plans',
        sa.Column('plan_id', sa.String(length=200), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('total', Money(), nullable=False),
        sa.Column('requested_on', sa.Date(), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('decided_on', sa.Date(), nullable=True),
        sa.Column('closed_on', sa.Date(), nullable=True),
        sa.Column('plan', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('plan_id'),
    )
    op.create_index('ix_dunning_plans_customer_id', 'dunning_plans', ['customer_id'], unique=False)
    op.create_index('ix_dunning_plans_status', 'dunning_plans', ['status', 'requested_on'], unique=False)
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.add_column(sa.Column('plan_id', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('plan_status', sa.String(length=20), nullable=True))
        for name in ('plans_agreed', 'plans_completed', 'plans_broken'):
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('dunning_accounts') as batch:
        for name in ('plans_broken', 'plans_completed', 'plans_agreed', 'plan_status', 'plan_id'):
            batch.drop_column(name)
    op.drop_index('ix_dunning_plans_status', table_name='dunning_plans')
    op.drop_index('ix_dunning_plans_customer_id', table_name='dunning_plans')
    op.drop_table('dunning_plans')
