"""Rebuild a service's read models in place from its event store (dunning, credit).

Stop the service first. ``verify`` compares a row-for-row checksum of every read-model table
before and after. (The ledger's replay is online: ``services/ledger/replay/``.)
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine, MetaData, select

from shared.db import make_engine
from shared.eventstore import TrackedApplication


class Projector(Protocol):
    def position(self) -> int: ...

    def apply(self, notifications: Any) -> None: ...


def checksums(engine: Engine, metadata: MetaData) -> dict[str, str]:
    """A digest per read-model table over its rows in key order."""
    result = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            digest = hashlib.sha256()
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(row)).encode())
            result[table.name] = digest.hexdigest()
    return result


def rebuild(app: TrackedApplication, projector: Projector, engine: Engine, metadata: MetaData,
            batch_size: int = 5000, progress: bool = True) -> int:
    """Empty the read models and project the whole notification log again; returns events read."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
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


def replay_in_place(
    service: str, database_url: str, app: TrackedApplication,
    make_projector: Callable[[TrackedApplication, Engine], Projector], metadata: MetaData,
    migrate: Callable[[str], None], *, verify: bool,
) -> int:
    """The ``receivables replay SERVICE [--verify]`` command; returns the exit status."""
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        before: dict[str, Any] = checksums(engine, metadata) if verify else {}
        projected = make_projector(app, engine).position()
        stored = app.recorder.max_notification_id() or 0
        if verify and projected < stored:
            print(f"note: the live read models had projected {projected} of {stored} events "
                  "(the service stopped before its projector caught up): they will differ")
        count = rebuild(app, make_projector(app, engine), engine, metadata)
        print(f"replayed {count} events into the {service} read models")
        if verify:
            after = checksums(engine, metadata)
            different = [name for name in after if before.get(name) != after[name]]
            if different:
                print(f"VERIFY FAILED: rebuilt tables differ from the live ones: {', '.join(different)}")
                return 1
            print("verified: every rebuilt table is identical, row for row, to the live one")
        return 0
    finally:
        engine.dispose()
        app.close()
