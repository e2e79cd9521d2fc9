"""Event-store plumbing shared by the services, on top of the eventsourcing library.

- ``eventsourcing_env``: the library's settings derived from one SQLAlchemy URL.
- ``OrjsonTranscoder``: domain event payloads are JSON-native (money as decimal strings,
  dates ISO), so a plain orjson round trip is all the transcoding needed; only the
  library's own ``timestamp`` (the recorded instant) is turned back into a datetime.
- ``TrackedApplication``: an Application on a process recorder whose saves can carry a
  tracking record (the consumed position) in the same transaction as the events.
- ``BinaryArrayPostgresProcessRecorder``: the library's PostgreSQL process recorder, with
  the array of new events sent in binary rather than text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import orjson
import psycopg
from eventsourcing.application import Application, LRUCache, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    Recording,
    Tracking,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteProcessRecorder
from psycopg import sql
from sqlalchemy.engine import make_url

from shared.db import sqlite_file_lock
from shared.write_turn import WriteTurn

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


def eventsourcing_env(database_url: str, *, cache_size: int | None = 50_000) -> dict[str, str]:
    """Translate a SQLAlchemy URL into the eventsourcing library's environment.

    ``cache_size`` None: no aggregate cache (for readers of the log, which get no aggregates).
    """
    url = make_url(database_url)
    env = {} if cache_size is None else {
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
            "PROCESS_RECORDER_TOPIC": f"{__name__}:KnownIdsSQLiteProcessRecorder",
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
            "PROCESS_RECORDER_TOPIC": f"{__name__}:BinaryArrayPostgresProcessRecorder",
        }
    else:
        raise ValueError(f"database_url: unsupported database {url.get_backend_name()!r}")
    return env


class BinaryArrayPostgresProcessRecorder(PostgresProcessRecorder):
    """The library's PostgreSQL process recorder, sending the new events in binary.

    The library inserts a batch of events as one array of a composite type, passed with a
    ``%s`` placeholder: psycopg then dumps it as text, escaping every event's bytes in
    Python (about 30 µs an event, as much as all the rest of a commit) and the server
    parses that text back. With ``%b`` the same array goes in binary (about 3 µs). Same
    table, same statement, same transaction: only the wire format of the parameter changes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.insert_events_statement = _binary_placeholders(self.insert_events_statement)


class KnownIdsSQLiteProcessRecorder(SQLiteProcessRecorder):
    """The library's SQLite process recorder, giving the aggregate ids it has already read as
    the same ``UUID`` objects.

    SQLite stores an originator id as text, and the library parses it (``UUID(text)``) for
    every event it reads: the followers' reads of the notification log spent a tenth of
    their time there, on the few thousand ids of the accounts they keep seeing.
    """

    _KNOWN_MAX = 100_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known: dict[str, UUID] = {}

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        if self.datastore.originator_id_type != "uuid":
            return originator_id
        known = self._known.get(originator_id)
        if known is None:
            if len(self._known) >= self._KNOWN_MAX:
                self._known.clear()
            known = self._known[originator_id] = UUID(originator_id)
        return known


def _binary_placeholders(statement: sql.Composable) -> sql.Composed:
    parts = statement if isinstance(statement, sql.Composed) else sql.Composed([statement])
    return sql.Composed([
        _binary_placeholders(part) if isinstance(part, sql.Composed)
        else sql.SQL(part.as_string().replace("%s", "%b")) if isinstance(part, sql.SQL)
        else part
        for part in parts
    ])


def postgres_conninfo(env: Any) -> str:
    """The event store's PostgreSQL connection string, from the library's environment
    (what ``eventsourcing_env`` sets), for a connection of our own beside the library's."""
    return psycopg.conninfo.make_conninfo(
        host=env.get("POSTGRES_HOST"), port=env.get("POSTGRES_PORT"), dbname=env.get("POSTGRES_DBNAME"),
        user=env.get("POSTGRES_USER"), password=env.get("POSTGRES_PASSWORD") or None,
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT") or 5))


# the advisory lock under which the event store's schema is changed (tables, functions)
SCHEMA_LOCK_KEY = "hashtext('receivables:eventstore-schema')"


@contextlib.contextmanager
def _schema_lock(env: Any) -> Iterator[None]:
    """Replicas starting together create the event store's tables one at a time.

    (The library's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one on
    PostgreSQL: the loser fails on a unique index of the catalog. On SQLite, processes setting
    up a new database together can fail with "database is locked".)
    """
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        with sqlite_file_lock(f"sqlite:///{env['SQLITE_DBNAME']}", "eventstore-schema"):
            yield
        return
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        yield
        return
    with psycopg.connect(postgres_conninfo(env), autocommit=True) as conn:
        conn.execute(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
        try:
            yield
        finally:
            conn.execute(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})")


# A historical read (``version=``) bypasses the aggregate cache: a fresh copy from the store.
LATEST_VERSION = 2**62

T = TypeVar("T")


def retry_on_conflict(attempt: Callable[[], T], attempts: int = 5,
                      on_conflict: Callable[[], None] = lambda: None) -> T:
    """``attempt()``, again after a version conflict (another writer saved the aggregate first)."""
    for remaining in range(attempts - 1, -1, -1):
        try:
            return attempt()
        except IntegrityError:
            on_conflict()
            if remaining == 0:
                raise
    raise AssertionError("unreachable")


# rows of one INSERT: 4 parameters each, well under SQLite's 32,766 a statement
_ROWS_A_STATEMENT = 500


@functools.lru_cache(maxsize=_ROWS_A_STATEMENT)
def _multi_row(insert_one: str, rows: int) -> str:
    """``INSERT ... VALUES (?,?,?,?)`` made to insert ``rows`` rows."""
    head, _, values = insert_one.rpartition(" VALUES ")
    return f"{head} VALUES {','.join([values] * rows)}"


def _insert_alone(recorder: SQLiteProcessRecorder, rows: list[tuple[Any, ...]]) -> None:
    """Rows that one statement inserts, as a transaction of its own (the connection commits
    each statement by itself): all or none, as in the library's transaction, without its
    BEGIN and COMMIT statements (a quarter of a credit-check group's save, commit included)."""
    with recorder.datastore.get_connection(commit=True) as connection, connection.cursor() as cursor:
        try:
            cursor.execute(_multi_row(recorder.insert_events_statement, len(rows)),
                           [value for row in rows for value in row])
        except sqlite3.IntegrityError as error:  # (as the library's transaction translates them)
            raise IntegrityError(error) from error
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error
        except sqlite3.Error as error:
            raise PersistenceError(error) from error


class TrackedApplication(Application[UUID]):
    """An eventsourcing Application whose saves can record a consumed position."""

    recorder: ProcessRecorder

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_recorder(self) -> ProcessRecorder:
        with _schema_lock(self.env):
            return self.factory.process_recorder()

    def save_tracked(
        self, *aggregates: Aggregate, tracking: Tracking | None
    ) -> None:
        """Save the aggregates' new events and the tracking record in one transaction."""
        # What ProcessingEvent.collect_events does for aggregates, without its two runtime
        # Protocol isinstance checks per aggregate (slow, and ours are always aggregates).
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        self.save_collected(events, aggregates, tracking=tracking)

    def save_collected(
        self, events: list[Any], aggregates: Collection[Aggregate], *, tracking: Tracking | None = None
    ) -> None:
        """Save events already collected from these aggregates, in one transaction.

        (A caller that goes on changing the aggregates while the save runs in another thread
        collects their events first, on its own thread.)
        """
        if not events and tracking is None:
            return
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        processing_event.events.extend(events)
        for aggregate in aggregates:
            processing_event.aggregates[aggregate.id] = aggregate
        try:
            recordings = self._record(processing_event)
        except Exception:
            self.evict_cached(*(a.id for a in aggregates))
            raise
        self._take_snapshots(processing_event)
        self._notify(recordings)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """On SQLite, the events in one multi-row ``INSERT`` (the library runs one ``execute`` an
        event, for notification ids and ``Recording`` objects nothing here reads); elsewhere the
        library's.

        One statement, not ``executemany``: the sqlite3 module lets go of the GIL around every
        row's step and must take it back after, and a save thread beside a busy event loop
        waited for it row after row (a group of 16 checks took 3 ms to insert, not 0.2). With
        no tracking record and at most one statement's rows, that statement is the whole
        transaction (``_insert_alone``).
        """
        recorder = self.recorder
        if not isinstance(recorder, SQLiteProcessRecorder):
            return super()._record(processing_event)
        rows = [
            (s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
             s.originator_version, s.topic, s.state)
            for s in map(self.mapper.to_stored_event, processing_event.events)
        ]
        with self._write_turn():
            if processing_event.tracking is None and len(rows) <= _ROWS_A_STATEMENT:
                _insert_alone(recorder, rows)
            else:
                with recorder.datastore.transaction(commit=True) as cursor:
                    for start in range(0, len(rows), _ROWS_A_STATEMENT):
                        chunk = rows[start:start + _ROWS_A_STATEMENT]
                        cursor.execute(_multi_row(recorder.insert_events_statement, len(chunk)),
                                       [value for row in chunk for value in row])
                    if processing_event.tracking is not None:
                        recorder._insert_tracking(cursor, processing_event.tracking)
        cache = self.repository.cache
        if cache is not None and not self.repository.fastforward:
            for aggregate_id, aggregate in processing_event.aggregates.items():
                cache.put(aggregate_id, aggregate)
        return []

    def evict_cached(self, *aggregate_ids: UUID) -> None:
        """Forget cached aggregates (after a failed save they hold unsaved changes)."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def cache_aggregate(self, aggregate: Aggregate) -> None:
        """Put an aggregate in the cache before its events are saved (a pipeline deciding on it)."""
        cache = self.repository.cache
        if cache is not None:
            cache.put(aggregate.id, aggregate)

    def is_cached(self, aggregate_id: UUID) -> bool:
        cache = self.repository.cache
        return cache is not None and aggregate_id in cache.cache

    def stored_ids(self, aggregate_ids: Collection[UUID]) -> set[UUID]:
        """Which of these aggregates have events in the store: one query for a whole batch.

        (``repository.get`` asks the store once per aggregate, and a batch of a growing
        book brings many new ones, each a round trip that finds nothing.)
        """
        ids = list(aggregate_ids)
        found: set[UUID] = set()
        recorder = self.recorder
        first = Aggregate.INITIAL_VERSION  # one index probe per aggregate: its first event
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            if isinstance(recorder, PostgresApplicationRecorder):
                query = sql.SQL(
                    "SELECT originator_id FROM {}.{} WHERE originator_version = %s "
                    "AND originator_id = ANY(%s)"
                ).format(sql.Identifier(recorder.datastore.schema),
                         sql.Identifier(recorder.events_table_name))
                with recorder.datastore.transaction(commit=False) as cursor:
                    # not prepared: a generic plan made on an empty table would scan it
                    cursor.execute(query, (first, chunk), prepare=False)
                    found.update(UUID(str(row["originator_id"])) for row in cursor.fetchall())
            elif isinstance(recorder, SQLiteApplicationRecorder):
                marks = ",".join("?" for _ in chunk)
                with recorder.datastore.transaction(commit=False) as cursor:
                    cursor.execute(
                        f"SELECT originator_id FROM {recorder.events_table_name} "
                        f"WHERE originator_version = ? AND originator_id IN ({marks})",
                        [first, *(i.hex for i in chunk)],
                    )
                    found.update(UUID(row["originator_id"]) for row in cursor.fetchall())
            else:
                found.update(i for i in chunk if recorder.select_events(i, limit=1))
        return found

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
        with self._write_turn():
            self.recorder.insert_tracking(Tracking(name, position))

    def write_turn(self) -> WriteTurn | None:
        """On SQLite, this process's turns at writing the store (``shared.write_turn.WriteTurn``)."""
        database = self.env.get("SQLITE_DBNAME")
        return WriteTurn.of(database) if database else None

    def _write_turn(self) -> contextlib.AbstractContextManager[Any]:
        return self.write_turn() or contextlib.nullcontext()
