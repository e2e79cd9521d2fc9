"""ledger models: the payment models' versions (not a read model: a replay leaves it alone)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_models',
    sa.Column('model_version', sa.String(length=80), nullable=False),
    sa.Column('trained_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cutoff', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('training_invoices', sa.Integer(), nullable=False),
    sa.Column('examples', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('libraries', sa.JSON(), nullable=False),
    sa.Column('blob', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('model_version')
    )
    op.create_index('ix_ledger_models_trained_at', 'ledger_models', ['trained_at'])


def downgrade() -> None:
    op.drop_index('ix_ledger_models_trained_at', 'ledger_models')
    op.drop_table('ledger_models')
