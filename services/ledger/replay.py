"""Rebuild the ledger's read models from its event store.

This first version rebuilds in place (stop the service first); ``--verify`` compares a
row-for-row checksum of every read-model table before and after.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

from sqlalchemy import Engine, select

from services.ledger.application import LedgerApplication
from services.ledger.projections import LedgerProjector, metadata, movements
from services.ledger.service import migrate_read_models
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.settings import ServiceSettings

# Columns that differ between a live and a rebuilt row without a difference in meaning.
_VOLATILE = {"id"}


def checksums(engine: Engine) -> dict[str, str]:
    """A digest per read-model table over its rows in key order (surrogate ids excluded)."""
    result = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if c.name not in _VOLATILE]
            order = (
                [movements.c.position, movements.c.id] if table is movements
                else list(table.primary_key.columns)
            )
            digest = hashlib.sha256()
            for row in conn.execute(select(*columns).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
            result[table.name] = digest.hexdigest()
    return result


def rebuild(app: LedgerApplication, engine: Engine, batch_size: int = 5000, progress: bool = True) -> int:
    """Empty the read models and project the whole notification log again; returns events read."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    projector = LedgerProjector(app, engine)
    last = app.recorder.max_notification_id() or 0
    position, done, started = 0, 0, time.monotonic()
    while True:
        notifications = app.recorder.select_notifications(position + 1, batch_size)
        if not notifications:
            break
        projector.apply(notifications)
        position = notifications[-1].id
        done += len(notifications)
        if progress:
            _progress(done, position, last, started)
    if progress:
        print(file=sys.stderr)
    return done


def _progress(done: int, position: int, last: int, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = done / elapsed
    share = position / last if last else 1.0
    eta = (last - position) / rate if rate else 0.0
    bar = "#" * int(share * 30)
    print(f"\r[{bar:<30}] {share:6.1%} {rate:,.0f} events/s ETA {eta:,.0f}s", end="", file=sys.stderr)


def replay_ledger(settings: ServiceSettings, *, verify: bool) -> int:
    migrate_read_models(settings.database_url)
    app = LedgerApplication(env=eventsourcing_env(settings.database_url))
    engine = make_engine(settings.database_url)
    try:
        before: dict[str, Any] = checksums(engine) if verify else {}
        count = rebuild(app, engine)
        print(f"replayed {count} events into the ledger's read models")
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
