"""Event-store plumbing shared by the services, on top of the eventsourcing library.

- ``eventsourcing_env``: the library's settings derived from one SQLAlchemy URL.
- ``OrjsonTranscoder``: domain event payloads are JSON-native (money as decimal strings,
  dates ISO), so a plain orjson round trip is all the transcoding needed; only the
  library's own ``timestamp`` (the recorded instant) is turned back into a datetime.
- ``TrackedApplication``: an Application on a process recorder whose saves can carry a
  tracking record (the consumed position) in the same transaction as the events.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import Application, LRUCache, ProcessingEvent
from eventsourcing.domain import MutableOrImmutableAggregate
from eventsourcing.persistence import ProcessRecorder, Tracking, Transcoder
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an event")


class OrjsonTranscoder(Transcoder):
    """Fast JSON transcoding for JSON-native event payloads."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_default)

    def decode(self, data: bytes) -> Any:
        state = orjson.loads(data)
        timestamp = state.get("timestamp") if isinstance(state, dict) else None
        if isinstance(timestamp, str):
            state["timestamp"] = datetime.fromisoformat(timestamp)
        return state


def eventsourcing_env(database_url: str, *, cache_size: int = 50_000) -> dict[str, str]:
    """Translate a SQLAlchemy URL into the eventsourcing library's environment."""
    url = make_url(database_url)
    env = {
        # One writer per partition owns each aggregate, so the cache is authoritative:
        # no re-reading the store on every get, no deep copies (see evict_cached()).
        "AGGREGATE_CACHE_MAXSIZE": str(cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("database_url: SQLite needs a file path, e.g. sqlite:///./ledger.db")
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": url.database,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    elif url.get_backend_name() == "postgresql":
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.database or "postgres",
            "POSTGRES_HOST": url.host or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": "5",
        }
    else:
        raise ValueError(f"database_url: unsupported database {url.get_backend_name()!r}")
    return env


class TrackedApplication(Application[UUID]):
    """An eventsourcing Application whose saves can record a consumed position."""

    recorder: ProcessRecorder

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def save_tracked(
        self, *aggregates: MutableOrImmutableAggregate[UUID], tracking: Tracking | None
    ) -> None:
        """Save the aggregates' new events and the tracking record in one transaction."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        processing_event.collect_events(*aggregates)
        if not processing_event.events and tracking is None:
            return
        try:
            recordings = self._record(processing_event)
        except Exception:
            self.evict_cached(*(a.id for a in aggregates))
            raise
        self._take_snapshots(processing_event)
        self._notify(recordings)

    def evict_cached(self, *aggregate_ids: UUID) -> None:
        """Forget cached aggregates (after a failed save they hold unsaved changes)."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def clear_cache(self) -> None:
        """Forget every cached aggregate (on partition reassignment another writer may own them)."""
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            cache.clear()
        elif cache is not None:
            cache.cache.clear()

    def position(self, name: str) -> int | None:
        """The last tracked position recorded under ``name``."""
        return self.recorder.max_tracking_id(name)

    def record_position(self, name: str, position: int) -> None:
        self.recorder.insert_tracking(Tracking(name, position))
