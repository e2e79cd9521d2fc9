"""Alembic environment of the credit read models (the event tables belong to eventsourcing)."""

from services.credit.projections import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata, "credit_alembic_version")
