"""Turns at writing a SQLite database file, for every thread of every process that writes it.

The event store's saves (``shared.eventstore``) and the read models' writer engines
(``shared.db.make_engine(writer=True)``) take a turn before they write, so that writers queue
rather than poll SQLite's lock. Within a process, the service's ``StoreWriter``
(``shared.store_writer``) lets one task at a time write the event store.
"""

from __future__ import annotations

import fcntl
import gc
import os
import sqlite3
import threading
from pathlib import Path


class WriteTurn:
    """Turns at writing one SQLite database, for every thread of every process using it.

    SQLite lets one writer in at a time and makes the others poll: a writer that finds the
    database locked sleeps 1 ms, then 2, 5, 10... before trying again. The service's event
    store saves (a credit check group every few milliseconds) and its followers' writes (in
    a child process) met that way half the time, and each save waited a millisecond or more
    for a lock held a fraction of that. Writers that take a turn first queue instead: the
    threads of a process on a lock, the processes on a flock beside the database, and the
    next in line runs as soon as the last is done. SQLite's own lock still guards the
    database (a writer that takes no turn is only slower). Re-entrant for the thread holding
    it; another thread may wait for it on that thread's behalf (``acquire(for_thread=)``).
    No garbage collection runs in the process while it holds the turn.
    """

    _turns: dict[tuple[int, str], WriteTurn] = {}
    _turns_lock = threading.Lock()

    def __init__(self, database: str) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread holding the turn
        self._depth = 0
        self._gc_was_enabled = False
        self._handle = open(f"{database}.write.lock", "a")  # noqa: SIM115 (open for the process's life)

    @classmethod
    def of(cls, database: str) -> WriteTurn:
        """This process's turns at writing ``database`` (a file path)."""
        key = (os.getpid(), database)  # a forked child queues with its own flock, not its parent's
        turn = cls._turns.get(key)
        if turn is None:
            with cls._turns_lock:
                turn = cls._turns.get(key)
                if turn is None:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                    turn = cls._turns[key] = cls(database)
        return turn

    def acquire(self, *, for_thread: int | None = None) -> None:
        """Wait for the turn. ``for_thread``: wait here on behalf of that thread, which then
        holds the turn and gives it back (an event loop waiting without blocking itself)."""
        self._take(threading.get_ident() if for_thread is None else for_thread, wait=True)

    def try_acquire(self) -> bool:
        """Take the turn if no one has it (True), without waiting."""
        return self._take(threading.get_ident(), wait=False)

    def _take(self, owner: int, *, wait: bool) -> bool:
        if self._owner == owner:
            self._depth += 1
            return True
        if not self._lock.acquire(blocking=wait):
            return False
        try:  # (flock lets go of the GIL while it waits)
            fcntl.flock(self._handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.release()
            return False
        except BaseException:
            self._lock.release()
            raise
        self._owner, self._depth = owner, 1
        self._hold_off_gc()
        return True

    def release(self) -> None:
        """Give the turn back (by the thread holding it)."""
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            if self._gc_was_enabled:
                gc.enable()
            self._lock.release()

    def _hold_off_gc(self) -> None:
        # A garbage collection pauses the process for tens of milliseconds once its heap is
        # large (the followers' mirror, the service's cache); while it holds the database,
        # every other writer would wait that long. It runs once the turn is given back.
        self._gc_was_enabled = gc.isenabled()
        gc.disable()

    def __enter__(self) -> WriteTurn:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class TurnTakingConnection(sqlite3.Connection):
    """A writer engine's SQLite connection: gives its write turn back once its transaction ends."""

    turn: WriteTurn | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._give_turn_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give_turn_back()

    def _give_turn_back(self) -> None:
        turn, self.turn = self.turn, None
        if turn is not None:
            turn.release()
