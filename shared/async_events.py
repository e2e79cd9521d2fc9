"""Saving collected events from the event loop, on PostgreSQL: no thread to wait for.

A save in a worker thread hands control back and forth with the event loop: every return
from the database waits for the loop's thread to let go of the GIL, and a loop busy with
requests keeps it for milliseconds. Credit checks are saved in groups every few
milliseconds while the loop answers the next requests, so there the save runs on the loop
itself, over an asynchronous connection: the loop goes on serving while PostgreSQL works.

The transaction is the library's (``eventsourcing.postgres``), statement for statement: the
same table lock (so notification ids are issued in commit order and no follower passes a
gap), the same ``NOTIFY``, the same rows. They run in a function of the event store's
schema (``<events table>_insert``, defined on connecting), called as one statement in its
own transaction: one round trip a save where BEGIN, the lock, the insert and COMMIT took
four, each waking the loop and the server. The rows go as four binary arrays, not one
array of the library's composite type (which would need its type registered on this
connection too). A row that exists already (another writer saved that aggregate version
first) is the library's ``IntegrityError``, as from the library's own save.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from shared.eventstore import SCHEMA_LOCK_KEY, TrackedApplication, postgres_conninfo


class AsyncEventWriter:
    """Writes events collected from aggregates, one transaction a call, in call order."""

    def __init__(self, app: TrackedApplication) -> None:
        recorder = app.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            raise TypeError("AsyncEventWriter writes to PostgreSQL only")
        self.app = app
        self._conninfo = postgres_conninfo(app.env)
        schema, table_name = recorder.datastore.schema, recorder.events_table_name
        function = sql.Identifier(schema, f"{table_name}_insert")
        before: list[Any] = [*recorder.lock_table_statements,
                  sql.SQL("NOTIFY {0}").format(sql.Identifier(recorder.channel_name))]
        self._define = sql.SQL(
            "CREATE OR REPLACE FUNCTION {function}(ids {id_type}[], versions bigint[], topics text[], "
            "states bytea[]) RETURNS void LANGUAGE plpgsql AS $body$ BEGIN {before}"
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(ids, versions, topics, states); END $body$"
        ).format(
            function=function, id_type=sql.SQL(recorder.datastore.originator_id_type),
            table=sql.Identifier(schema, table_name),
            before=sql.Composed([sql.SQL("EXECUTE {0}; ").format(sql.Literal(_text(statement)))
                                 for statement in before]),
        )
        self._insert = sql.SQL("SELECT {0}(%b, %b, %b, %b)").format(function)
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the connection, in call order

    async def save(self, events: list[Any]) -> None:
        """Save the events in one transaction (``IntegrityError`` on a version conflict)."""
        if not events:
            return
        to_stored_event = self.app.mapper.to_stored_event
        stored = [to_stored_event(event) for event in events]
        columns = (
            [s.originator_id if isinstance(s.originator_id, UUID) else UUID(str(s.originator_id))
             for s in stored],
            [s.originator_version for s in stored],
            [s.topic for s in stored],
            [s.state for s in stored],
        )
        async with self._lock:
            connection = await self._connected()
            try:
                await connection.execute(self._insert, columns)  # (autocommit: its own transaction)
            except psycopg.errors.UniqueViolation as error:
                raise IntegrityError(error) from error
            except psycopg.OperationalError:
                await self.close()  # a connection that failed midway is not used again
                raise

    async def _connected(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed:
            connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            try:
                async with connection.transaction():
                    # replicas (re)define it one at a time, as they create the tables
                    await connection.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                    await connection.execute(self._define)
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
        return self._connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def _text(statement: Any) -> str:
    """A statement of the library's (a string or composed SQL) as text, to run with EXECUTE."""
    return statement.as_string() if isinstance(statement, sql.Composable) else str(statement)
