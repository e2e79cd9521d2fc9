"""dunning accounts: the last day the customer was contacted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 09:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.add_column(sa.Column('last_contact_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dunning_accounts') as batch:
        batch.drop_column('last_contact_on')
