"""Read-model database plumbing: engines, an exact money column, upserts, migrations."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Engine,
    Executable,
    Result,
    Table,
    create_engine,
    event,
    func,
)
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from shared.write_turn import TurnTakingConnection, WriteTurn

# The largest integer a request may carry to a query (a BIGINT): larger is a 422 at the edge.
BIGINT_MAX = 2**63 - 1
MONEY_SCALE = 4  # four decimal places hold every ISO 4217 minor unit (CLF has four)


class Money(TypeDecorator[Decimal]):
    """Exact money on every database: an integer count of 1/10,000 of the currency unit.

    SQLite has no decimal type (SQLAlchemy would go through float); scaled integers sum
    exactly in SQL on SQLite and PostgreSQL alike.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return _money_bind(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if value.__class__ is float:  # SQLite turns an integer overflowing in arithmetic into REAL
            raise InexactMoney(f"a money value came back as floating point ({value!r}): cents lost")
        # int; Decimal (PostgreSQL's SUM of a BIGINT); text (an exact sum beyond 64 bits on SQLite)
        return money_of_units(int(value))


def money_of_units(units: int) -> Decimal:
    """The amount a ``Money`` column stores as ``units`` (for a query that reads the raw integers
    and converts them itself, without the type's per-value layers)."""
    return Decimal(units).scaleb(-MONEY_SCALE)


class InexactMoney(ArithmeticError):
    """Money read back as floating point: SQL arithmetic on SQLite left the 64-bit integers."""


def read_models_url(database_url: str) -> str:
    """Where a service keeps its read models when its event store is written per request.

    On SQLite: a file of their own beside the event store's (``credit.db`` ->
    ``credit.read-models.db``). SQLite lets one writer into a file at a time, so the
    projector's transactions would hold the service's own saves (a group of credit checks
    every few milliseconds) behind them. The read models are rebuilt from the event store
    (``receivables replay``), so a new file fills itself. On PostgreSQL, the same database.
    """
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return database_url
    path = Path(parsed.database)
    if path.stem.endswith(".read-models"):  # already the read models' (a URL may come either way)
        return database_url
    return parsed.set(database=str(path.with_name(f"{path.stem}.read-models{path.suffix}"))).render_as_string(
        hide_password=False)


def plain_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A result row as a dict any JSON encoder takes, e.g. ``plain_row(row._mapping)``.

    Its keys become plain ``str``: SQLAlchemy names a table's columns with ``quoted_name``, a
    ``str`` subclass orjson refuses as a key. Its datetimes get their offset back: SQLite
    returns the UTC instants it stores without one.
    """
    return {str(key): value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None
            else value for key, value in row.items()}


def make_engine(url: str, *, writer: bool = False) -> Engine:
    """An engine tuned for its backend; SQLite gets WAL and a generous busy timeout.

    ``writer``: on SQLite every transaction takes the write lock when it begins (BEGIN
    IMMEDIATE). A transaction that reads first and writes later cannot wait for another
    process's write to finish (SQLite refuses the upgrade at once: "database is locked").
    On a database file it takes its :class:`WriteTurn` first.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database if parsed.database and parsed.database != ":memory:" else None
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # statements kept compiled: the multi-row writes have a few shapes per table (_sqlite_multi_row)
        connect_args: dict[str, Any] = {"timeout": 30, "check_same_thread": False, "cached_statements": 512}
        if writer and database:
            connect_args["factory"] = TurnTakingConnection
        engine = create_engine(url, connect_args=connect_args)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            if writer:
                dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

        if writer:
            @event.listens_for(engine, "begin")
            def _begin_immediate(conn: Connection) -> None:
                dbapi_connection = conn.connection.dbapi_connection
                if isinstance(dbapi_connection, TurnTakingConnection) and dbapi_connection.turn is None:
                    assert database is not None
                    turn = WriteTurn.of(database)
                    turn.acquire()
                    dbapi_connection.turn = turn  # given back by its commit or rollback
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except BaseException:
                    if isinstance(dbapi_connection, TurnTakingConnection):
                        dbapi_connection._give_turn_back()
                    raise

        return engine
    # No server-side prepared statements: psycopg prepares a query after 5 runs and
    # PostgreSQL may then keep a generic plan made while the tables were still empty (a
    # sequential scan) until the next ANALYZE; the projector's lookups by id, reused for
    # the whole life of the service, went from milliseconds to a second each that way.
    # Planning these statements afresh costs far less.
    return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True,
                         connect_args={"prepare_threshold": None})


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    *,
    increment: Iterable[str] = (),
) -> None:
    """Insert rows, or update them where the key exists; ``increment`` columns are added to.

    Every row has the keys of the first one.
    """
    if rows:
        _executemany(conn, table, rows, tuple(keys), frozenset(increment))


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (all with the keys of the first one): one ``executemany`` on SQLite, one
    ``COPY`` on PostgreSQL (a third less time than the unnest arrays, in the server and here)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows)
    else:
        _executemany(conn, table, rows, None, frozenset())


def _copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    dialect = conn.dialect
    columns = tuple(rows[0])
    shapes = _BULK.setdefault(dialect, {})
    shape = ("copy", table.fullname, columns)
    if shape not in shapes:
        preparer = dialect.identifier_preparer
        names = ", ".join(preparer.quote(c) for c in columns)
        shapes[shape] = (
            f"COPY {preparer.format_table(table)} ({names}) FROM STDIN",
            _row_values(columns, [_bind_processor(table.c[c].type, dialect) for c in columns]),
        )
    sql, values = shapes[shape]
    # the driver's own cursor, in the connection's transaction; text format, escaped by psycopg
    with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        write_row = copy.write_row
        for row in rows:
            write_row(values(row))


def _row_values(
    columns: tuple[str, ...], processors: Sequence[Callable[[Any], Any] | None],
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values in ``columns`` order, each through its processor (if it has one).

    Made once per shape of rows as one function of its own (``return (row["a"], p1(row["b"]),
    ...)``): a single Python call per row, where a loop over (column, processor) pairs, or
    ``itemgetter`` and a loop over the processed ones, cost two to three times as much on
    the projections' hot path.
    """
    scope: dict[str, Any] = {}
    taken = []
    for i, (column, process) in enumerate(zip(columns, processors, strict=True)):
        if process is None:
            taken.append(f"row[{column!r}]")
        else:
            scope[f"p{i}"] = process
            taken.append(f"p{i}(row[{column!r}])")
    exec(f"def values(row):\n    return ({', '.join(taken)},)\n", scope)  # our own names; the columns' repr'd
    values: Callable[[dict[str, Any]], tuple[Any, ...]] = scope["values"]
    return values


# Bulk writes are the projections' hot path. ``conn.execute(statement, rows)`` builds and
# type-processes a parameter dict per row through the compiler (about half the cost of a
# projection batch); here the SQL is built once per shape and each row goes through the
# columns' own bind processors (the same conversions) straight to the driver. SQLite gets
# one ``executemany``; PostgreSQL gets one statement with a binary array per column
# (``INSERT ... SELECT * FROM unnest(...)``): psycopg's executemany costs as much per row
# in Python as the rest of the projection.
RowValues = Callable[[dict[str, Any]], tuple[Any, ...]]
_BULK: weakref.WeakKeyDictionary[Dialect, dict[Any, tuple[str, RowValues]]] = weakref.WeakKeyDictionary()


def _executemany(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, ...] | None,
    increment: frozenset[str],
) -> None:
    dialect = conn.dialect
    columns = tuple(rows[0])
    # unnest() needs unique keys: one statement cannot update a row twice
    arrays = dialect.name == "postgresql" and (
        keys is None or len({tuple(row[k] for k in keys) for row in rows}) == len(rows)
    )
    shapes = _BULK.setdefault(dialect, {})
    shape = (table.fullname, columns, keys, increment, arrays)
    if shape not in shapes:
        shapes[shape] = (
            _bulk_sql(dialect, table, columns, keys, increment, arrays),
            _row_values(columns, [_bind_processor(table.c[c].type, dialect) for c in columns]),
        )
    sql, values = shapes[shape]
    params = list(map(values, rows))
    if arrays:
        conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*params, strict=True)))
    elif dialect.name == "sqlite" and len(params) > 1:
        _sqlite_multi_row(conn, sql, params)
    else:
        conn.exec_driver_sql(sql, params)


# SQLite: rows go in multi-row ``INSERT ... VALUES (...), (...)`` statements (one step of
# the statement for many rows, as shared.eventstore inserts events), in statements of
# _MULTI_ROWS rows and then of halving sizes, so that a table has a few statement shapes
# (each compiled once, in the driver's statement cache) whatever the number of rows.
_MULTI_ROWS = 256
_SQLITE_VARIABLES = 32_766  # the most parameters a statement takes (SQLite >= 3.32)


def _sqlite_multi_row(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        size = min(_MULTI_ROWS, _SQLITE_VARIABLES // len(params[0]))
        start, count = 0, len(params)
        while start < count:
            while size > count - start:
                size //= 2
            if size == 1:
                cursor.executemany(sql, params[start:])
                return
            cursor.execute(_multi_row(sql, size), list(chain.from_iterable(params[start:start + size])))
            start += size
    finally:
        cursor.close()


@functools.lru_cache(maxsize=1024)
def _multi_row(insert_one: str, rows: int) -> str:
    """``INSERT ... VALUES (?, ?) [ON CONFLICT ...]`` made to insert ``rows`` rows."""
    head, _, tail = insert_one.partition(" VALUES (")
    values, _, conflict = tail.partition(")")
    return f"{head} VALUES {', '.join([f'({values})'] * rows)}{conflict}"


def _bind_processor(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column's bind processor, or a faster one giving the same value.

    SQLAlchemy's own go through one or two Python layers per value and format dates with
    ``%``; these are most of a projection's per-row cost. Same results (checked by
    tests/unit/test_db_binds.py): money as scaled integers; JSON (None as JSON null) by
    orjson; on SQLite, dates and datetimes in SQLAlchemy's storage format.
    """
    if isinstance(column_type, Money):
        return _money_bind
    if isinstance(column_type, JSON) and not column_type.none_as_null:
        return _json_bind  # the same document as SQLAlchemy's json.dumps, without its spaces
    if dialect.name == "sqlite" and isinstance(column_type, DateTime):
        return _sqlite_datetime_bind
    if dialect.name == "sqlite" and isinstance(column_type, Date):
        return _sqlite_date_bind
    processor: Callable[[Any], Any] | None = column_type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _money_bind(value: Any) -> int | None:
    if value.__class__ is Decimal:
        scaled = _MONEY_SEEN.get(value)  # amounts repeat (zero most of all): a lookup, not arithmetic
        if scaled is not None:
            return scaled
    elif value is None:
        return None
    else:
        value = Decimal(value)
    scaled = value.scaleb(MONEY_SCALE)
    integral = int(scaled)
    if integral != scaled:
        raise ValueError(f"{value} has more than {MONEY_SCALE} decimal places")
    _remember(_MONEY_SEEN, value, integral)
    return integral


# What a bind processor gave for a value, by value (equal values give equal results: an equal
# Decimal, date or instant): looking one up costs a tenth of working it out again. Cleared
# when full; a thread may miss another's latest entry, never get a wrong one.
_SEEN_MAX = 50_000
_MONEY_SEEN: dict[Decimal, int] = {}
_DATES_SEEN: dict[date, str] = {}
_INSTANTS_SEEN: dict[datetime, str] = {}


def _remember(seen: dict[Any, Any], value: Any, bound: Any) -> None:
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen[value] = bound


def _json_bind(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_date_bind(value: date | None) -> str | None:
    if value.__class__ is date:
        text = _DATES_SEEN.get(value)
        if text is None:
            text = value.isoformat()
            _remember(_DATES_SEEN, value, text)
        return text
    if value is None:
        return None
    # a datetime, or something else: SQLAlchemy decides
    raise TypeError("SQLite Date type only accepts Python date objects as input.")


def _sqlite_datetime_bind(value: datetime | None) -> str | None:
    if value.__class__ is not datetime:
        if value is None:
            return None
        raise TypeError("SQLite DateTime type only accepts Python datetime objects as input.")
    # Only instants in UTC are looked up and kept: equal instants in other zones read differently
    # once their offset is dropped (12:00+00:00 == 13:00+01:00).
    utc = value.tzinfo is UTC
    if utc and (text := _INSTANTS_SEEN.get(value)) is not None:
        return text
    # "YYYY-MM-DD HH:MM:SS.ffffff", the offset dropped, as SQLAlchemy stores it
    text = value.isoformat(" ", "microseconds")[:26]
    if utc:
        _remember(_INSTANTS_SEEN, value, text)
    return text


def _bulk_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], keys: tuple[str, ...] | None,
    increment: frozenset[str], arrays: bool,
) -> str:
    quote = dialect.identifier_preparer.quote
    name = dialect.identifier_preparer.format_table(table)  # schema-qualified if it has one
    names = ", ".join(quote(c) for c in columns)
    if arrays:
        casts = ", ".join(f"%b::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
        sql = f"INSERT INTO {name} ({names}) SELECT * FROM unnest({casts})"
    elif dialect.paramstyle == "qmark":
        sql = f"INSERT INTO {name} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    elif dialect.paramstyle in ("format", "pyformat"):
        sql = f"INSERT INTO {name} ({names}) VALUES ({', '.join('%s' for _ in columns)})"
    else:  # pragma: no cover - SQLite and psycopg are the supported drivers
        raise NotImplementedError(f"bulk writes for paramstyle {dialect.paramstyle!r}")
    if keys is not None:
        updates = ", ".join(
            f"{quote(c)} = {name}.{quote(c)} + excluded.{quote(c)}" if c in increment
            else f"{quote(c)} = excluded.{quote(c)}"
            for c in columns if c not in keys
        )
        conflict = f" ON CONFLICT ({', '.join(quote(k) for k in keys)})"
        sql += f"{conflict} DO UPDATE SET {updates}" if updates else f"{conflict} DO NOTHING"
    return sql


# Alembic keeps the running migration's context in module globals: services started together
# in one process (`receivables dev`) must migrate one after the other.
_MIGRATING = threading.Lock()


def migrate(url: str, script_location: Path, version_table: str) -> None:
    """Bring a service's read-model schema to the newest Alembic revision.

    One migration at a time: within a process (Alembic keeps its state in globals), and on
    SQLite across processes (a flock beside the database; on PostgreSQL the migration
    environment takes an advisory lock), so replicas starting together take turns.
    """
    with _MIGRATING, sqlite_file_lock(url, "migrate"):
        _migrate(url, script_location, version_table)


@contextlib.contextmanager
def sqlite_file_lock(url: str, name: str) -> Iterator[None]:
    """On SQLite, an exclusive lock across processes: a flock on a file beside the database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        yield
        return
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{parsed.database}.{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other process is done
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _migrate(url: str, script_location: Path, version_table: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = version_table
    command.upgrade(config, "head")


# ---------------------------------------------------------------------- sums of money
#
# A sum of money in SQL goes past what a BIGINT holds on a big enough book (a thousand
# invoices near the per-message ceiling in one currency). PostgreSQL's SUM(bigint) is a
# numeric and stays exact. SQLite's SUM raises "integer overflow" instead, and its integer
# arithmetic (a product, a difference) silently turns into REAL. So every sum of money is
# ``money_sum`` and every statement holding one runs through ``execute_sums``: SQLite sums
# natively and only a statement that overflowed runs once more with an exact aggregate in
# Python (``money_sum_exact``). Always exact would cost the common case: the aging of a
# book of 200,000 invoices took 525 ms instead of 173 ms that way; an overflowing one now
# takes about 600 ms (the native attempt, then the exact run).

_EXACT_SUMS = contextvars.ContextVar("exact_money_sums", default=False)
_INT64 = range(-(2**63), 2**63)
# An exact sum beyond 64 bits comes back as text, zero-padded so that positive sums order
# among themselves (SQLite orders text after every number): 2^63 rows of 2^63 fit in 39 digits.
_WIDE_SUM_DIGITS = 40


class _MoneySum(FunctionElement[Any]):
    """SUM of ``amount`` (times ``weight``, if given) in SQL: see ``money_sum``."""

    name = "money_sum"
    inherit_cache = True
    type = BigInteger()


@compiles(_MoneySum)
def _native_sum(element: _MoneySum, compiler: SQLCompiler, **kw: Any) -> str:
    amount, *weight = element.clauses
    return compiler.process(func.sum(amount * weight[0] if weight else amount), **kw)


@compiles(_MoneySum, "sqlite")
def _sqlite_sum(element: _MoneySum, compiler: SQLCompiler, **kw: Any) -> str:
    if _EXACT_SUMS.get():
        return f"money_sum_exact({compiler.process(element.clauses, **kw)})"
    return _native_sum(element, compiler, **kw)


class _ExactSum:
    """SQLite aggregate ``money_sum_exact(amount[, weight])``: the sum of amount x weight in
    Python integers; an int when it fits 64 bits, else its digits as text (read by Money)."""

    def __init__(self) -> None:
        self.total = 0
        self.empty = True

    def step(self, amount: int | str | None, weight: int | None = 1) -> None:
        if amount is None or weight is None:
            return  # as SUM: NULLs are skipped
        # text: an inner exact sum beyond 64 bits; a REAL would already have lost cents
        if amount.__class__ not in (int, str) or weight.__class__ is not int:
            raise InexactMoney(f"money_sum_exact({amount!r}, {weight!r}): not an integer")
        self.total += int(amount) * weight
        self.empty = False

    def finalize(self) -> int | str | None:
        if self.empty:
            return None
        return self.total if self.total in _INT64 else f"{self.total:0{_WIDE_SUM_DIGITS}d}"


def money_sum(amount: Any, *, weight: Any = None) -> Any:
    """SUM of a Money expression (each amount times ``weight``, if given), 0 when there are
    no rows, read back as an exact Decimal on every database.

    Run the statement with ``execute_sums``: on SQLite it is native SUM unless that
    overflows. On PostgreSQL the SQL is plain ``sum(amount)`` (``sum(amount * weight)``).
    A sum may be compared in SQL (``money_sum(x) != 0``) and ordered by when positive.
    """
    total = _MoneySum(amount) if weight is None else _MoneySum(amount, weight)
    return func.coalesce(total, 0, type_=Money())


def execute_sums(conn: Connection, statement: Executable) -> Result[*tuple[Any, ...]]:
    """Run a statement holding ``money_sum``: its rows, all fetched, with every sum exact.

    On SQLite a native SUM beyond 64 bits raises "integer overflow" (while the rows are
    fetched, for a streamed GROUP BY), and a weighted sum beyond them comes back as REAL:
    the statement then runs again with the exact aggregate. Almost every book never gets there.
    """
    try:
        return conn.execute(statement).freeze()()
    except (OperationalError, InexactMoney) as error:
        overflowed = isinstance(error, InexactMoney) or "integer overflow" in str(error.orig)
        if conn.dialect.name != "sqlite" or not overflowed:
            raise
    return _exact_sums(conn, statement)


def _exact_sums(
    conn: Connection, statement: Executable, params: Mapping[str, Any] | None = None,
) -> Result[*tuple[Any, ...]]:
    """``statement`` on SQLite with every money sum by the exact aggregate."""
    # registered here, not when connecting: any SQLite connection (a test's own engine) can fall back
    conn.connection.dbapi_connection.create_aggregate("money_sum_exact", -1, _ExactSum)  # type: ignore[union-attr]
    token = _EXACT_SUMS.set(True)
    try:  # compiled afresh: the cached SQL is the native one
        return conn.execute(statement, params, execution_options={"compiled_cache": None}).freeze()()
    finally:
        _EXACT_SUMS.reset(token)


# ---------------------------------------------------------------------- prepared reads
#
# A hot read (one customer's balance, one invoice) costs far more in SQLAlchemy than in the
# database: building the statement, its cache key, the execution context and the result
# objects took about 1.5 ms of CPU a balance, the query itself (SQLite, an indexed range of a
# few dozen rows) about 0.2 ms. A ``PreparedRead`` is built once, with ``bindparam``s for
# what varies; it is compiled once per dialect and runs on the driver's cursor, its values
# going through the same bind and result processors SQLAlchemy would apply.


class PreparedRead:
    """A SELECT compiled once per dialect, run straight on the driver's cursor of a
    SQLAlchemy connection: ``PreparedRead(select(...).where(t.c.id == bindparam("id")))
    .all(conn, {"id": ...})`` -> the rows as tuples, values as ``conn.execute`` gives them.

    A statement holding ``money_sum`` is exact as with ``execute_sums``: on SQLite, a sum
    overflowing 64 bits runs again through ``execute_sums``' exact aggregate.
    """

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: weakref.WeakKeyDictionary[Dialect, _CompiledRead] = weakref.WeakKeyDictionary()

    @property
    def keys(self) -> list[str]:
        """The names of the rows' columns (as a result's ``keys()``)."""
        return [column.key for column in self.statement.selected_columns]

    def compiled(self, dialect: Dialect) -> _CompiledRead:
        """The statement's SQL for ``dialect``, with its parameters' and results' processors."""
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _CompiledRead(self.statement, dialect)
        return compiled

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        dialect = conn.dialect
        compiled = self.compiled(dialect)
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        parameters = compiled.parameters(params)
        try:
            cursor.execute(compiled.sql, parameters)
            return compiled.rows(cursor.fetchall())
        except InexactMoney:
            if dialect.name != "sqlite":
                raise
        except dialect.loaded_dbapi.Error as error:
            if dialect.name != "sqlite" or "integer overflow" not in str(error):
                # as conn.execute raises it (a 503 for an OperationalError), the connection
                # invalidated if it is gone
                invalidated = dialect.is_disconnect(error, dbapi_connection, cursor)
                if invalidated:
                    conn.invalidate(error)
                raise DBAPIError.instance(compiled.sql, parameters, error, dialect.loaded_dbapi.Error,
                                          connection_invalidated=invalidated, dialect=dialect) from error
        finally:
            with contextlib.suppress(dialect.loaded_dbapi.Error):  # (a connection gone)
                cursor.close()
        return [tuple(row) for row in _exact_sums(conn, self.statement, params)]


class _CompiledRead:
    """A ``PreparedRead``'s SQL for one dialect, its parameters' defaults and processors."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        token = _EXACT_SUMS.set(False)  # the native SQL, as execute_sums first tries
        try:
            compiled = statement.compile(dialect=dialect)
        finally:
            _EXACT_SUMS.reset(token)
        # the bind parameters given at each run; the rest are the statement's own literals
        self.names = {bind.key for bind in compiled.binds.values() if bind.required}
        # literal IN lists expanded (``kind IN (?, ?)``), as each execution would
        state = compiled.construct_expanded_state(dict.fromkeys(self.names))
        if any(name in self.names for name in state.parameter_expansion):
            raise ValueError("a PreparedRead takes no list parameter")
        self.sql: str = state.statement
        processors = {**compiled._bind_processors, **state.processors}  # (expanded names: the latter)
        self.processors = {name: p for name, p in processors.items() if callable(p)}
        self.defaults = {name: self._bind(name, value) for name, value in state.parameters.items()}
        self.positions = list(state.positiontup) if state.positiontup is not None else None
        results = [(i, c.type._cached_result_processor(dialect, None))
                   for i, c in enumerate(statement.selected_columns)]
        self.results = [(i, p) for i, p in results if p is not None]

    def _bind(self, name: str, value: Any) -> Any:
        process = self.processors.get(name)
        return value if process is None or value is None else process(value)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = dict(self.defaults)
        for name, value in params.items():
            if name not in self.names:
                raise KeyError(f"no parameter {name!r} in {self.sql!r}")
            values[name] = self._bind(name, value)
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)

    def rows(self, fetched: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.results:
            return [tuple(row) for row in fetched]
        out = []
        for row in fetched:
            values = list(row)
            for i, process in self.results:
                values[i] = process(values[i])
            out.append(tuple(values))
        return out

