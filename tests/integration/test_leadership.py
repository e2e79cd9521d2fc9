"""Followers' leadership across processes, on SQLite (flock) and PostgreSQL (advisory lock)."""

from __future__ import annotations

import subprocess
import sys

from shared.leadership import Leadership
from shared.testing import wait_until

HOLDER = """
import sys, time
from shared.leadership import Leadership
from shared.testing import wait_until
leadership = Leadership(sys.argv[1], "test-followers")
assert leadership.acquire()
print("held", flush=True)
sys.stdin.readline()  # holds until killed
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
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    successor = Leadership(database_url, "test-followers")
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert not successor.acquire()
        holder.kill()
        holder.wait(timeout=10)
        # the server (PostgreSQL) or the kernel (flock) notices the dead holder
        wait_until(successor.acquire, timeout=15, what="the lock of a killed holder released")
    finally:
        holder.kill()
        successor.release()



MIGRATE = """
import sys
from services.ledger.read.schema import migrate_read_models
from services.ledger.application import LedgerApplication
from shared.eventstore import eventsourcing_env
print("ready", flush=True)
sys.stdin.readline()  # all start together
migrate_read_models(sys.argv[1])
LedgerApplication(env=eventsourcing_env(sys.argv[1])).close()  # creates the event tables
"""


def test_replicas_starting_together_migrate_in_turn(database_url: str) -> None:
    starters = [subprocess.Popen([sys.executable, "-c", MIGRATE, database_url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for starter in starters:
        assert starter.stdout is not None and starter.stdout.readline() == b"ready\n"
    for starter in starters:
        assert starter.stdin is not None
        starter.stdin.write(b"go\n")
        starter.stdin.flush()
    for starter in starters:
        _, stderr = starter.communicate(timeout=120)
        assert starter.returncode == 0, stderr.decode()[-2000:]
