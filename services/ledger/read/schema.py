"""The read models' schema: Alembic migrations in ``services/ledger/migrations``, versioned
in ``ledger_alembic_version`` (the event tables belong to eventsourcing)."""

from __future__ import annotations

from pathlib import Path

from shared.db import migrate

MIGRATIONS = Path(__file__).parents[1] / "migrations"


def migrate_read_models(database_url: str) -> None:
    migrate(database_url, MIGRATIONS, "ledger_alembic_version")
