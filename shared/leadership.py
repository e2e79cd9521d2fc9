"""One holder at a time: which replica's followers (projections, outbox) run.

Several replicas of a service share one database. Their consumers split the partitions,
but the notification log is one: if every replica's outbox relay followed it, every event
would be published once per replica. So the followers of a service run in the replica
that holds its leadership, and take over within a few seconds when that replica dies:

- PostgreSQL: a session advisory lock on a connection of its own, released by the server
  when the connection closes, however the holder died;
- SQLite (one machine): an exclusive ``flock`` on a file beside the database, released by
  the kernel when the holding process exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0  # how often a holder makes sure its lock is still there


class Leadership:
    """Try to become, and check that we still are, the one holder of ``name``."""

    def __init__(self, database_url: str, name: str) -> None:
        self.name = name
        self._url = make_url(database_url)
        self._lock = threading.Lock()  # the followers ask from worker threads
        self._held = False
        self._checked_at = 0.0
        self._connection: psycopg.Connection[Any] | None = None
        self._file: int | None = None

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        """True while we hold it: takes it if free, re-checks a held one now and then."""
        with self._lock:
            now = time.monotonic()
            if self._held and now - self._checked_at < RECHECK_SECONDS:
                return True
            try:
                held = self._still_held() if self._held else self._try_take()
            except Exception as error:  # the database went away: so did a PostgreSQL lock
                log.warning("leadership of %s: %s", self.name, error)
                self._drop()
                held = False
            if held != self._held:
                log.info("%s leadership of %s", "took" if held else "lost", self.name)
            self._held, self._checked_at = held, now
            return held

    def release(self) -> None:
        with self._lock:
            if self._held and self._connection is not None:
                # unlock now: the server frees a closed session's locks a moment later
                with contextlib.suppress(Exception):
                    self._connection.execute("SELECT pg_advisory_unlock(%s)", (_key(self.name),))
            self._drop()
            self._held = False

    # ------------------------------------------------------------------ backends

    def _try_take(self) -> bool:
        if self._url.get_backend_name() == "postgresql":
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(_conninfo(self._url), autocommit=True, connect_timeout=5)
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (_key(self.name),)).fetchone()
            return bool(row and row[0])
        if self._file is None:
            self._file = os.open(f"{self._url.database}.{self.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _still_held(self) -> bool:
        if self._connection is not None:
            self._connection.execute("SELECT 1")  # raises if the session (and its lock) is gone
        return True  # a flock lasts as long as our open file

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)  # closing the file releases the flock
            self._file = None


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.sha256(f"receivables:{name}".encode()).digest()[:8], "big", signed=True)


def _conninfo(url: Any) -> str:
    return str(url.set(drivername="postgresql").render_as_string(hide_password=False))
