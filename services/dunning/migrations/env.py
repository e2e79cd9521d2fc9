"""Alembic environment of the dunning read models (the event tables belong to eventsourcing)."""

from services.dunning.projections import metadata
from shared.migrations_env import run_migrations

run_migrations(metadata, "dunning_alembic_version")
