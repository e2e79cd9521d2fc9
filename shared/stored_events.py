"""Stored events of many aggregates at once, straight from the event store's table: one query
per call instead of the library's round trip per aggregate (what a run or a review over
thousands of accounts spends most of its time on otherwise). PostgreSQL and SQLite; another
recorder falls back to the library's calls."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql


def _events_of(recorder: Any, aggregate_ids: list[UUID], columns: str, rest: str) -> list[Any] | None:
    """``SELECT {columns} FROM <events> WHERE originator_id IN (the ids) {rest}`` on the
    recorder's database, rows with ``originator_id`` as a UUID; None for another recorder."""
    if isinstance(recorder, PostgresApplicationRecorder):
        query = sql.SQL(f"SELECT {columns} FROM {{}}.{{}} WHERE originator_id = ANY(%s) {rest}").format(
            sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=False) as cursor:
            # not prepared: a generic plan made on an empty table would scan it
            cursor.execute(query, (aggregate_ids,), prepare=False)
            return list(cursor.fetchall())
    if isinstance(recorder, SQLiteApplicationRecorder):
        marks = ",".join("?" for _ in aggregate_ids)
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT {columns} FROM {recorder.events_table_name} "
                           f"WHERE originator_id IN ({marks}) {rest}", [i.hex for i in aggregate_ids])
            return [{**row, "originator_id": UUID(row["originator_id"])} for row in cursor.fetchall()]
    return None


def select_versions(recorder: Any, aggregate_ids: list[UUID]) -> dict[UUID, int]:
    """The version of the last stored event of each of these aggregates: one query."""
    rows = _events_of(recorder, aggregate_ids, "originator_id, max(originator_version) AS version",
                      "GROUP BY originator_id")
    if rows is None:
        return {i: recorder.select_events(i, desc=True, limit=1)[0].originator_version for i in aggregate_ids}
    return {row["originator_id"]: row["version"] for row in rows}


def select_stored_events(recorder: Any, aggregate_ids: list[UUID]) -> list[StoredEvent]:
    """Every stored event of these aggregates, in (aggregate, version) order: one query."""
    rows = _events_of(recorder, aggregate_ids, "originator_id, originator_version, topic, state",
                      "ORDER BY originator_id, originator_version")
    if rows is None:
        return [event for i in aggregate_ids for event in recorder.select_events(i)]
    return [StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                        topic=row["topic"], state=bytes(row["state"])) for row in rows]

