"""Rebuild the credit read models from its event store.

Like the ledger's: this version rebuilds in place (stop the service first); ``--verify``
compares a row-for-row checksum of every read-model table before and after.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from sqlalchemy import Engine, select

from services.credit.application import CreditApplication
from services.credit.projections import CreditProjector, metadata
from services.credit.service import migrate_read_models
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.settings import ServiceSettings


def checksums(engine: Engine) -> dict[str, str]:
    """A digest per read-model table over its rows in key order."""
    result = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            digest = hashlib.sha256()
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(row)).encode())
            result[table.name] = digest.hexdigest()
    return result


def rebuild(app: CreditApplication, engine: Engine, batch_size: int = 5000, progress: bool = True) -> int:
    """Empty the read models and project the whole notification log again; returns events read."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    projector = CreditProjector(app, engine)
    position = done = 0
    while notifications := app.recorder.select_notifications(position + 1, batch_size):
        projector.apply(notifications)
        position = notifications[-1].id
        done += len(notifications)
        if progress:
            print(f"\r{done:,} events", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return done


def replay_credit(settings: ServiceSettings, *, verify: bool) -> int:
    app = CreditApplication(env=eventsourcing_env(settings.database_url, cache_size=None))  # (makes the dir)
    migrate_read_models(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        before: dict[str, Any] = checksums(engine) if verify else {}
        projected = CreditProjector(app, engine).position()
        stored = app.recorder.max_notification_id() or 0
        if verify and projected < stored:
            print(f"note: the live read models had projected {projected} of {stored} events "
                  "(the service stopped before its projector caught up): they will differ")
        count = rebuild(app, engine)
        print(f"replayed {count} events into the credit read models")
        if verify:
            after = checksums(engine)
            different = [name for name in after if before.get(name) != after[name]]
            if different:
                print(f"VERIFY FAILED: rebuilt tables differ from the live ones: {', '.join(different)}")
                return 1
            print("verified: every rebuilt table is identical, row for row, to the live one")
        return 0
    finally:
        engine.dispose()
        app.close()
