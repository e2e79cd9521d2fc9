"""Turns at writing a SQLite database (``shared.write_turn.WriteTurn``): one writer at a time across
threads and processes, taken by a writer engine's transactions until they end."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.write_turn import WriteTurn


def _other_thread(call: object) -> object:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()))  # type: ignore[operator]
    thread.start()
    thread.join(30)
    return result[0]


def test_one_thread_at_a_time_and_again_in_the_same_thread(tmp_path: Path) -> None:
    turn = WriteTurn.of(str(tmp_path / "x.db"))
    assert WriteTurn.of(str(tmp_path / "x.db")) is turn
    with turn:
        assert _other_thread(turn.try_acquire) is False
        assert turn.try_acquire() is True  # re-entrant
        turn.release()
        assert _other_thread(turn.try_acquire) is False
    assert _other_thread(lambda: turn.try_acquire() and (turn.release() or True)) is True


def _hold(database: str, taken: multiprocessing.synchronize.Event,
          done: multiprocessing.synchronize.Event) -> None:
    with WriteTurn.of(database):
        taken.set()
        done.wait(30)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    database = str(tmp_path / "x.db")
    context = multiprocessing.get_context("spawn")
    taken, done = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(database, taken, done))
    holder.start()
    try:
        assert taken.wait(30)
        turn = WriteTurn.of(database)
        assert turn.try_acquire() is False
        done.set()
        holder.join(30)
        assert turn.try_acquire() is True
        turn.release()
    finally:
        done.set()
        holder.join(30)


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_a_writer_engine_holds_the_turn_for_its_transaction(tmp_path: Path, ending: str) -> None:
    database = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{database}", writer=True)
    turn = WriteTurn.of(str(database))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        refused = pytest.raises(RuntimeError) if ending == "rollback" else contextlib.nullcontext()
        with refused, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            assert _other_thread(turn.try_acquire) is False
            if ending == "rollback":
                raise RuntimeError("rolled back")
        assert _other_thread(lambda: turn.try_acquire() and (turn.release() or True)) is True
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == (1 if ending == "commit" else 0)
    finally:
        engine.dispose()
