"""Alembic environment of the ledger's read models (the event tables belong to eventsourcing)."""

from services.ledger.read.projections import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata, "ledger_alembic_version")
