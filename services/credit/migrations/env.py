"""Alembic environment of the credit read models (the event tables belong to eventsourcing)."""

from services.credit.projections import metadata
from shared.db import read_models_url
from shared.migrations_env import run_migrations

run_migrations(metadata, "credit_alembic_version", read_models_url)  # on SQLite, a file of their own
