"""Followers' leadership across processes, on SQLite (flock) and PostgreSQL (advisory lock)."""

from __future__ import annotations

import subprocess
import sys
import time

from shared.leadership import Leadership

HOLDER = """
import sys, time
from shared.leadership import Leadership
leadership = Leadership(sys.argv[1], "test-followers")
assert leadership.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_one_holder_at_a_time_and_release_hands_over(database_url: str) -> None:
    first, second = Leadership(database_url, "test-followers"), Leadership(database_url, "test-followers")
    other_name = Leadership(database_url, "other-followers")
    try:
        assert first.acquire()
        assert not second.acquire()
        assert other_name.acquire(), "another name is another lock"
        assert first.acquire(), "a holder keeps it"
        first.release()
        assert second.acquire()
        assert not first.acquire()
    finally:
        for leadership in (first, second, other_name):
            leadership.release()


def test_a_holder_killed_with_sigkill_loses_it(database_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database_url], stdout=subprocess.PIPE)
    successor = Leadership(database_url, "test-followers")
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert not successor.acquire()
        holder.kill()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not successor.acquire():  # the server/kernel notices the dead holder
            assert time.monotonic() < deadline, "the lock of a killed holder was never released"
            time.sleep(0.05)
    finally:
        holder.kill()
        successor.release()
