"""The hot reads' runner (``shared.hot_reads.HotReads``): outside a transaction, and a
connection the server dropped replaced on the spot, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, column, func, select, table

from shared.db import PreparedRead, make_engine
from shared.hot_reads import HotReads, ReadPlan

_ANSWERS = PreparedRead(select(column("n", Integer)).select_from(table("answers")).order_by(column("n")))
_BACKEND = PreparedRead(select(func.pg_backend_pid()))


def answers() -> ReadPlan[list[int]]:
    rows = yield _ANSWERS, {}
    return [n for (n,) in rows]


def two_reads() -> ReadPlan[tuple[list[int], Any]]:
    first = yield from answers()
    (pid,) = (yield _BACKEND, {})[0]
    return first, pid


async def test_a_read_sees_what_is_committed_and_survives_a_dropped_connection(database_url: str) -> None:
    engine = make_engine(database_url)
    reads = HotReads(engine)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE answers (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO answers VALUES (1)")
        assert await reads.run(answers()) == [1]
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO answers VALUES (2)")
        assert await reads.run(answers()) == [1, 2]  # what was committed since
        if engine.dialect.name != "postgresql":
            return
        _, pid = await reads.run(two_reads())
        # the server drops the pool's connections: the next reads still answer, on new ones
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = '' AND pid <> pg_backend_pid() "
                                 "AND datname = current_database()")
        assert await reads.run(answers()) == [1, 2]
        first, other = await reads.run(two_reads())
        assert first == [1, 2] and other != pid
    finally:
        await reads.close()
        engine.dispose()
