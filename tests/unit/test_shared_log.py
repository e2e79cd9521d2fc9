"""Followers sharing one read of the notification log get what the store would answer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

from eventsourcing.persistence import Notification

from shared.follower import SharedLog


class Store:
    """A notification log whose ids have gaps (rolled-back transactions), counting reads."""

    def __init__(self) -> None:
        self.log: list[Notification] = []
        self.reads = 0

    def commit(self, *ids: int) -> None:
        self.log.extend(Notification(id=i, originator_id=uuid4(), originator_version=1, topic="t",
                                     state=b"{}") for i in ids)

    def select_notifications(self, start: int, limit: int) -> list[Notification]:
        self.reads += 1
        return [n for n in self.log if n.id >= start][:limit]


def shared_log(store: Store, keep: int = 6000) -> SharedLog:
    return SharedLog(cast(Any, SimpleNamespace(recorder=store)), keep=keep)


def test_the_second_follower_of_a_batch_reads_it_from_memory() -> None:
    store = Store()
    store.commit(*range(1, 11))
    log = shared_log(store)
    projector = log.read(1, 4)
    outbox = log.read(1, 4)
    assert outbox == projector == store.log[:4] and store.reads == 1
    # further on, and a follower behind inside the kept run: slices of it
    assert log.read(5, 4) == store.log[4:8] and store.reads == 2
    assert log.read(3, 4) == store.log[2:6] and store.reads == 2


def test_gaps_in_the_ids_are_served_as_the_store_would() -> None:
    store = Store()
    store.commit(1, 2, 5, 6, 9, 10, 11)
    log = shared_log(store)
    assert log.read(1, 6) == store.log[:6]
    assert log.read(3, 3) == store.select_notifications(3, 3) == [store.log[2], store.log[3], store.log[4]]
    assert store.reads == 2  # one of them the check above


def test_a_request_the_kept_run_cannot_fill_goes_to_the_store() -> None:
    store = Store()
    store.commit(1, 2, 3)
    log = shared_log(store)
    assert log.read(1, 10) == store.log  # the whole log, for now
    store.commit(4, 5)
    assert [n.id for n in log.read(1, 10)] == [1, 2, 3, 4, 5] and store.reads == 2
    assert [n.id for n in log.read(4, 10)] == [4, 5] and store.reads == 3
    # far ahead of the kept run, then back before it: both asked of the store
    store.commit(*range(6, 40))
    assert [n.id for n in log.read(30, 3)] == [30, 31, 32] and store.reads == 4
    assert [n.id for n in log.read(2, 3)] == [2, 3, 4] and store.reads == 5


def test_the_kept_run_is_bounded() -> None:
    store = Store()
    store.commit(*range(1, 101))
    log = shared_log(store, keep=10)
    for start in range(1, 101, 5):
        assert [n.id for n in log.read(start, 5)] == list(range(start, start + 5))
    reads = store.reads
    assert [n.id for n in log.read(91, 5)] == list(range(91, 96)) and store.reads == reads
    assert [n.id for n in log.read(81, 5)] == list(range(81, 86)) and store.reads == reads + 1
