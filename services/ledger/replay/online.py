"""Online replay: rebuild the ledger's read models from its event store while the service serves.

1. **Shadow tables.** Fresh, empty copies of every read model (``ReadModels``): on
   PostgreSQL the same tables in the schema ``ledger_replay`` (same table, index,
   constraint and sequence names), on SQLite tables and indexes named ``replay_...``.
2. **Build.** The whole notification log is projected into them by the projector's own
   code, in large batches, while the live projector (in the service's followers process)
   goes on keeping the live tables. The replay is the only writer of its shadow tables,
   so it holds their rows in memory (``shadow_rows``): each batch's movements are stored
   by a second connection while the next batch is projected, the other rows once at the
   end; past a memory limit it writes them out and goes on as the live projector does.
   No secondary index exists meanwhile (past the limit, the ones the projector reads by);
   on PostgreSQL they are built in bulk after (then ANALYZE), on SQLite in the switch.
3. **Switch**, in ONE transaction holding the live projector's position row lock
   (PostgreSQL: ``SELECT ... FOR UPDATE`` on its row of ``ledger_projection_positions``,
   which the projector takes for every batch; SQLite: ``BEGIN IMMEDIATE``, which the
   projector's engine also uses):

   - take the event store's last notification id N; project what the live tables lack up
     to N into the live tables, and what the shadow lacks up to N into the shadow: both now
     stand at the same position;
   - ``--verify``: a checksum of every table, row for row, live against shadow; a
     difference aborts the switch (everything rolls back, the live tables stay);
   - swap: PostgreSQL moves the live tables to a schema ``ledger_retired`` and the shadow
     tables into the live schema (``ALTER TABLE ... SET SCHEMA``, transactional, indexes,
     constraints and sequences move along under their names); SQLite drops the live
     tables, renames the shadow ones (``ALTER TABLE ... RENAME``, transactional) and
     rebuilds their secondary indexes under the live names (SQLite cannot rename an
     index);
   - the live projector's position row is set to N.

   On commit, the live projector's blocked ``SELECT ... FOR UPDATE`` returns N (the row it
   waited for was updated), or its ``BEGIN IMMEDIATE`` goes through and reads N: it goes
   on from N into the new tables, which it names per statement, neither losing nor
   applying twice any event. REST readers name the tables too, so they read the old tables
   until the commit and the new ones after; on PostgreSQL they wait for the moment the
   table locks are held (taken all at once with NOWAIT, retried, so that a reader holding
   one table while waiting for another can never deadlock with the switch); on SQLite
   (WAL) they never wait.
4. The retired tables are dropped after the commit.

Alembic sees the same tables, indexes and constraints before and after (the shadow schema
is not the default one; SQLite's shadow tables are gone after the switch).

One replay at a time per database: a PostgreSQL advisory lock, or on SQLite a lock file next
to the database. Every replay is recorded in the event store (``runs``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql
from psycopg.rows import tuple_row
from sqlalchemy import Engine, Index, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from services.ledger.application import LedgerApplication
from services.ledger.domain.replay_run import ReplayRun
from services.ledger.read.projections import (
    LIVE,
    SHADOW_PREFIX,
    SHADOW_SCHEMA,
    LedgerProjector,
    ReadModels,
    locked_position,
    record_position,
    shadow_read_models,
)
from services.ledger.read.schema import migrate_read_models
from services.ledger.replay import runs, shadow_rows
from services.ledger.replay.shadow_rows import ShadowRows
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.runtime import tune_gc
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RETIRED_SCHEMA = "ledger_retired"
_ADVISORY_LOCK = 0x4C454447  # "LEDG": one replay of the ledger's read models at a time
# The indexes the projector reads by (reversed payments' receipts by customer, disputes
# waiting for their invoice): made before the build goes on from the tables (past the
# memory limit); the others only after the build, in bulk.
_NEEDED_WHILE_BUILDING = frozenset({"ix_ledger_movements_customer_date", "ix_ledger_disputes_invoice_id"})
# Columns that differ between a live and a rebuilt row without a difference in meaning.
_VOLATILE = {"id"}


class ReplayError(RuntimeError):
    """The replay did not switch the rebuilt tables in; the live ones are unchanged."""


class ReplayBusy(ReplayError):
    """Another replay of this database is running."""


class VerificationFailed(ReplayError):
    """The rebuilt tables differ from the live ones at the same position."""


@dataclass(frozen=True)
class Progress:
    events: int  # projected so far
    position: int
    last: int  # the log's last notification id when the build began
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float:
        return max(self.last - self.position, 0) / self.rate if self.rate else 0.0


@dataclass(frozen=True)
class ReplayResult:
    position: int  # the notification id at which the rebuilt tables were switched in
    events: int  # events projected into them
    seconds: float
    build_seconds: float
    switch_seconds: float
    verified: bool
    checksums: dict[str, str]


# ------------------------------------------------------------------------ checksums


def checksums(source: Engine | Connection, models: ReadModels = LIVE) -> dict[str, str]:
    """A digest per read model over its rows in a total order (surrogate ids excluded).

    Keys are the live table names, so a shadow set compares with the live one. Movements
    are ordered by every column: within one event the order in which rows were inserted
    is not a fact (it may depend on where batches began). PostgreSQL computes an
    order-independent equivalent itself.
    """
    if isinstance(source, Engine):
        with source.connect() as conn:
            return checksums(conn, models)
    if source.dialect.name == "postgresql":
        return _postgres_checksums(source, models)
    result = {}
    for live, table in zip(LIVE.tables, models.tables, strict=True):
        columns = [c for c in table.columns if c.name not in _VOLATILE]
        order = columns if table is models.movements else list(table.primary_key.columns)
        digest = hashlib.sha256()
        for row in source.execute(select(*columns).order_by(*order)):
            digest.update(repr(tuple(row)).encode())
        result[live.name] = digest.hexdigest()
    return result


def _postgres_checksums(conn: Connection, models: ReadModels) -> dict[str, str]:
    """The same comparison computed by the server: the row count and the sum of a 64-bit
    digest (md5) of every row's text, which does not depend on the order of the rows; a few
    seconds per million rows instead of a minute through Python."""
    result = {}
    for live, table in zip(LIVE.tables, models.tables, strict=True):
        columns = ", ".join(f'"{c.name}"' for c in table.columns if c.name not in _VOLATILE)
        name = conn.dialect.identifier_preparer.format_table(table)
        count, total = conn.execute(text(
            f"SELECT count(*), coalesce(sum(('x' || left(md5(r::text), 16))::bit(64)::bigint::numeric), 0) "
            f"FROM (SELECT {columns} FROM {name}) AS r"
        )).one()
        result[live.name] = f"{count}:{total}"
    return result


# ------------------------------------------------------------------------ the replay


class OnlineReplay:
    """Rebuild into shadow tables, then switch them in atomically (see the module's docstring)."""

    def __init__(
        self, app: LedgerApplication, engine: Engine, *, batch_size: int | None = None,
        progress: Callable[[Progress], None] | None = None,
        lock_path: Path | None = None,
        before_commit: Callable[[Connection, int], None] | None = None,
        memory_limit: int = shadow_rows.DEFAULT_LIMIT,
    ) -> None:
        """``engine``: a writer engine (``make_engine(url, writer=True)``) of the read models.

        ``memory_limit``: rows the build may hold in memory (``shadow_rows``).

        ``before_commit(conn, position)`` runs in the switch's transaction, after the swap
        and before the commit (tests use it to act while the switch holds its locks).
        """
        self.app = app
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer: a batch holds the whole database's write lock while it runs
        self.batch_size = batch_size or (20_000 if self.dialect == "postgresql" else 5_000)
        self.progress = progress
        self.shadow = shadow_read_models(self.dialect)
        self.live_projector = LedgerProjector(app, engine, LIVE)
        self.shadow_projector = LedgerProjector(app, engine, self.shadow)
        self.lock_path = lock_path
        self.before_commit = before_commit
        self.memory_limit = memory_limit
        self._indexed: set[str] = set()  # live names of the shadow indexes made so far

    def run(self, *, verify: bool) -> ReplayResult:
        started = time.monotonic()
        with self._exclusive():
            self._drop_leftovers()
            self._create_shadow()
            try:
                position, events = self._build()
                self._index()
                built = time.monotonic()
                position, caught_up, sums = self._switch(position, verify)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._drop_leftovers()
                raise
            switched = time.monotonic()
            self._drop_leftovers()
        return ReplayResult(position, events + caught_up, time.monotonic() - started,
                            built - started, switched - built, verify, sums)

    # -- one at a time

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                locked = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
                if not locked.scalar():
                    raise ReplayBusy("another replay of the ledger's read models is running")
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
                    conn.commit()
            return
        path = self.lock_path or Path(str(make_url(str(self.engine.url)).database) + ".replay-lock")
        with open(path, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayBusy("another replay of the ledger's read models is running") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- shadow tables

    def _drop_leftovers(self) -> None:
        """Remove shadow and retired tables (of this run, or of one that died)."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
                conn.execute(text(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
            else:
                for table in self.shadow.tables:
                    conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))

    def _live_name(self, index: Index) -> str:
        name = str(index.name)
        return name if self.dialect == "postgresql" else name.removeprefix(SHADOW_PREFIX)

    def _create_shadow(self) -> None:
        """Empty shadow tables, without secondary indexes: the build reads its rows from memory."""
        self._indexed = set()
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text(f"CREATE SCHEMA {SHADOW_SCHEMA}"))
            for table in self.shadow.tables:
                conn.execute(CreateTable(table))

    def _create_indexes(self, names: frozenset[str] | None = None, tables: set[str] | None = None) -> None:
        """The shadow tables' secondary indexes not made yet (only ``names``, of ``tables``)."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            for table in self.shadow.tables:
                if tables is not None and table.name not in tables:
                    continue
                for index in table.indexes:
                    name = self._live_name(index)
                    if name not in self._indexed and (names is None or name in names):
                        conn.execute(CreateIndex(index))
                        self._indexed.add(name)

    def _index(self) -> None:
        """PostgreSQL: the indexes, built in bulk once the rows are in (and statistics).

        (SQLite builds them under their live names in the switch, as it cannot rename one.)
        """
        if self.dialect != "postgresql":
            return
        self._create_indexes()
        with self.engine.begin() as conn:
            for table in self.shadow.tables:
                conn.execute(text(f'ANALYZE "{SHADOW_SCHEMA}"."{table.name}"'))

    # -- build

    def _batches(self, after: int, upto: int | None) -> Iterator[list[Any]]:
        """Decoded events after ``after`` (up to ``upto``), a batch at a time."""
        recorder = self.app.recorder
        select: Callable[..., Sequence[Any]] = recorder.select_notifications
        if isinstance(recorder, PostgresApplicationRecorder):
            select = _stored_rows(recorder)
        position = after
        while True:
            notifications = select(position + 1, self.batch_size, stop=upto)
            if not notifications:
                return
            position = notifications[-1].id
            yield self.shadow_projector.decode(notifications)

    def _build(self) -> tuple[int, int]:
        """Project the whole log into the shadow tables; returns (position, events).

        The rows are held in memory (``ShadowRows``) and written at the end; past the
        memory limit they are written out and the build goes on reading rows back, with
        the indexes the projector reads by.
        """
        last = self.app.recorder.max_notification_id() or 0
        position = done = 0
        started = time.monotonic()
        held: ShadowRows | None = ShadowRows(self.engine, self.shadow, limit=self.memory_limit)
        try:
            for events in _read_ahead(self._batches(0, None)):
                if held is None:
                    with self.engine.begin() as conn:
                        self.shadow_projector.project(conn, events)
                else:
                    held.project(self.shadow_projector, events)
                    if held.full:
                        log.warning("replay: more than %s rows held, writing them out and going on "
                                    "from the tables", f"{self.memory_limit:,}")
                        held.spill()
                        held.close()
                        held = None
                        self._create_indexes(_NEEDED_WHILE_BUILDING)
                position = events[-1][0]
                done += len(events)
                if self.progress is not None:
                    self.progress(Progress(done, position, last, time.monotonic() - started))
            if held is not None:
                held.wait()
                if self.dialect == "postgresql":
                    # the server indexes the movements while this process writes the other rows
                    with concurrent.futures.ThreadPoolExecutor(1) as indexer:
                        indexing = indexer.submit(self._create_indexes, tables={self.shadow.movements.name})
                        held.spill()
                        indexing.result()
                else:
                    held.spill()
        finally:
            if held is not None:
                held.close()
        return position, done

    # -- switch

    def _switch(self, shadow_position: int, verify: bool) -> tuple[int, int, dict[str, str]]:
        with self.engine.begin() as conn:
            live_position = locked_position(conn, LedgerProjector.name)
            target = max(self.app.recorder.max_notification_id() or 0, live_position, shadow_position)
            caught_up = 0
            for events in self._batches(live_position, target):
                self.live_projector.project(conn, events)
            for events in self._batches(shadow_position, target):
                self.shadow_projector.project(conn, events)
                caught_up += len(events)
            sums: dict[str, str] = {}
            if verify:
                sums = checksums(conn, LIVE)
                rebuilt = checksums(conn, self.shadow)
                different = [name for name in sums if sums[name] != rebuilt[name]]
                if different:
                    raise VerificationFailed(
                        f"at position {target} the rebuilt tables differ from the live ones: "
                        + ", ".join(different)
                    )
            if self.dialect == "postgresql":
                self._swap_postgres(conn)
            else:
                self._swap_sqlite(conn)
            record_position(conn, LedgerProjector.name, target)
            if self.before_commit is not None:
                self.before_commit(conn, target)
        return target, caught_up, sums

    def _swap_postgres(self, conn: Connection, timeout: float = 30.0) -> None:
        live_schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        every = ", ".join(
            [f'"{live_schema}"."{t.name}"' for t in LIVE.tables]
            + [f'"{SHADOW_SCHEMA}"."{t.name}"' for t in self.shadow.tables]
        )
        # All table locks at once or none (NOWAIT, retried): never waiting while holding some,
        # the switch cannot deadlock with a reader that holds one table and waits for another.
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            savepoint = conn.begin_nested()
            try:
                conn.execute(text(f"LOCK TABLE {every} IN ACCESS EXCLUSIVE MODE NOWAIT"))
                savepoint.commit()
                break
            except Exception as error:
                savepoint.rollback()
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise ReplayError(f"could not lock the read models to switch them: {error}") from error
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
        conn.execute(text(f"CREATE SCHEMA {RETIRED_SCHEMA}"))
        for table in LIVE.tables:
            conn.execute(text(f'ALTER TABLE "{live_schema}"."{table.name}" SET SCHEMA {RETIRED_SCHEMA}'))
        for table in self.shadow.tables:
            conn.execute(text(f'ALTER TABLE "{SHADOW_SCHEMA}"."{table.name}" SET SCHEMA "{live_schema}"'))

    def _swap_sqlite(self, conn: Connection) -> None:
        for live, shadow in zip(LIVE.tables, self.shadow.tables, strict=True):
            conn.execute(text(f'DROP TABLE "{live.name}"'))
            conn.execute(text(f'ALTER TABLE "{shadow.name}" RENAME TO "{live.name}"'))
            for index in shadow.indexes:
                conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
            for index in live.indexes:
                conn.execute(CreateIndex(index))


class _StoredRow(NamedTuple):
    """A notification as the decoder and the mapper read it (``Notification``'s fields)."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def _stored_rows(recorder: PostgresApplicationRecorder) -> Callable[..., list[_StoredRow]]:
    """``select_notifications`` for a replay's reads: tuples straight from the cursor instead
    of a dict per row made into a ``Notification`` (a tenth of the replay's CPU)."""
    statement = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
    ).format(sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))
    make = _StoredRow._make

    def select(start: int, limit: int, stop: int | None = None) -> list[_StoredRow]:
        with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(statement, (start, _LAST_ID if stop is None else stop, limit), prepare=True)
            return list(map(make, cursor.fetchall()))
    return select


_LAST_ID = 2**63 - 1


def _read_ahead(batches: Iterator[_T]) -> Iterator[_T]:
    """The same batches, each next one read (and decoded) by a thread while this one is used:
    the server's time to select them overlaps the projection."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay-reader") as reader:
        pending = reader.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = reader.submit(next, batches, None)
            yield batch


# ------------------------------------------------------------------------ entry points


def print_progress(progress: Progress) -> None:
    """A one-line progress bar on stderr: share done, events/s, time left."""
    share = progress.position / progress.last if progress.last else 1.0
    bar = "#" * int(min(share, 1.0) * 30)
    print(f"\r[{bar:<30}] {share:6.1%} {progress.events:,} events {progress.rate:,.0f} events/s "
          f"ETA {progress.eta:,.0f}s", end="", file=sys.stderr, flush=True)


def replay(
    app: LedgerApplication, engine: Engine, *, requested_by: str, via: str, verify: bool,
    progress: Callable[[Progress], None] | None = None, batch_size: int | None = None,
    run: ReplayRun | None = None, memory_limit: int = shadow_rows.DEFAULT_LIMIT,
) -> tuple[ReplayRun, ReplayResult]:
    """Replay online and record it in the audit trail (requested, then switched or failed).

    ``run``: the request, when the caller recorded it already (the REST endpoint answers
    with its id before the work starts).
    """
    run = run or runs.record_requested(app, requested_by, via, verify)
    try:
        result = OnlineReplay(
            app, engine, progress=progress, batch_size=batch_size, memory_limit=memory_limit
        ).run(verify=verify)
    except BaseException as error:
        runs.record_finished(app, run, "failed", detail=f"{type(error).__name__}: {error}")
        raise
    runs.record_finished(
        app, run, "switched", position=result.position, events=result.events,
        milliseconds=round(result.seconds * 1000),
        detail="verified: identical to the live tables" if result.verified else None,
    )
    return run, result


def replay_ledger(settings: ServiceSettings, *, verify: bool, requested_by: str | None = None) -> int:
    """``receivables replay ledger [--verify]``: online, recorded as asked by the OS user."""
    tune_gc()  # the build allocates millions of short-lived containers: rare full collections
    migrate_read_models(settings.database_url)
    app = LedgerApplication(env=eventsourcing_env(settings.database_url, cache_size=None))
    engine = make_engine(settings.database_url, writer=True)
    try:
        run, result = replay(app, engine, requested_by=requested_by or runs.os_principal(),
                             via="cli", verify=verify, progress=print_progress,
                             memory_limit=settings.replay_memory_rows)
    except ReplayError as error:
        print(file=sys.stderr)
        print(f"replay FAILED, the live read models are unchanged: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
        app.close()
    print(file=sys.stderr)
    print(f"replay {run.run_id}: {result.events:,} events in {result.seconds:,.1f}s "
          f"({result.events / max(result.build_seconds, 1e-9):,.0f} events/s building), switched in at "
          f"position {result.position} in {result.switch_seconds * 1000:,.0f} ms")
    if verify:
        print("verified: every rebuilt table was identical, row for row, to the live one at that position")
    return 0
