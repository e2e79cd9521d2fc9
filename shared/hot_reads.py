"""The hot reads (a customer's balance and open items, an invoice): each written once as a
plan of ``PreparedRead`` statements, run on the event loop.

A plan is a generator that yields ``(statement, parameters)`` and is sent back the rows; it
returns the answer. ``run_plan`` runs one on a SQLAlchemy connection (SQLite, tests, scripts);
``HotReads.run`` runs it for a service:

- on SQLite with a connection of the engine, right on the loop: SQLite answers from this
  process in microseconds, and a thread hop cost more than the query;
- on PostgreSQL with psycopg's asynchronous driver and pool, in autocommit: each statement
  sees what was committed when it began (as under READ COMMITTED), with no BEGIN and
  ROLLBACK around it, no thread hop and no pre-ping (a ``SELECT 1`` round trip at every
  checkout). Measured beside a worker thread with SQLAlchemy's pool: about 1.4 times the
  reads a second (``bench/reads.py``). A read is idempotent, so a connection the server
  dropped is replaced and the statement run once more instead of failing the request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Engine

from shared.db import PreparedRead

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
ReadPlan = Generator[tuple[PreparedRead, Mapping[str, Any]], Rows, T]


def run_plan(conn: Connection, plan: ReadPlan[T]) -> T:
    """The answer of ``plan``, its statements run on ``conn``."""
    try:
        statement, params = next(plan)
        while True:
            statement, params = plan.send(statement.all(conn, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class HotReads:
    """A service's way to run read plans on ``engine``'s database (``close`` it after use).

    On PostgreSQL its pool opens at the first read, in the loop that serves the reads;
    ``timeout``: the longest a read waits for a connection before it fails (a 503).
    """

    def __init__(self, engine: Engine, *, max_size: int = 10, timeout: float = 5.0) -> None:
        self._engine = engine
        self._max_size, self._timeout = max_size, timeout
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> AsyncConnectionPool[Any]:
        async with self._opening:
            if self._pool is None:
                conninfo = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                # no server-side prepared statements, as for the engine (shared.db.make_engine)
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    conninfo, min_size=2, max_size=self._max_size, timeout=self._timeout, open=False,
                    name="hot-reads", kwargs={"autocommit": True, "prepare_threshold": None})
                await pool.open()
                self._pool = pool
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def run(self, plan: ReadPlan[T]) -> T:
        if self._engine.dialect.name == "sqlite":
            with self._engine.connect() as conn:
                return run_plan(conn, plan)
        pool = self._pool or await self._connections()
        async with contextlib.AsyncExitStack() as held:
            conn = await held.enter_async_context(pool.connection())
            try:
                statement, params = next(plan)
                while True:
                    try:
                        rows = await self._all(conn, statement, params)
                    except psycopg.OperationalError:
                        if not conn.broken:
                            raise
                        # dropped by the server (a restart): the pool discards it when it is
                        # given back and replaces its idle ones that are gone too; the
                        # statement runs again on another
                        await pool.check()
                        conn = await held.enter_async_context(pool.connection())
                        rows = await self._all(conn, statement, params)
                    statement, params = plan.send(rows)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _all(self, conn: psycopg.AsyncConnection[Any], statement: PreparedRead,
                   params: Mapping[str, Any]) -> Rows:
        compiled = statement.compiled(self._engine.dialect)
        async with conn.cursor() as cursor:
            await cursor.execute(compiled.sql, compiled.parameters(params))
            return compiled.rows(await cursor.fetchall())
