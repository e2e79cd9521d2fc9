"""The one way a service writes its event store within a process.

Every writer goes through the service's ``StoreWriter``: the Kafka consumer's batches
(``write_batch``), the REST commands, the dunning runs and credit reviews (``run``), and
the credit-check desk, which pipelines its own saves under ``lock``. The writer sees to
what each of them used to remember on its own:

- one at a time: the cached aggregates are the writers' common state, and the store is
  written in the order things were decided (across processes, SQLite's ``WriteTurn``
  beside the event store and PostgreSQL's table lock order the writers);
- off the event loop: the store's calls block, so they run in a worker thread;
- nothing half kept: a batch whose commit fails is discarded (the event store itself
  evicts the aggregates of a failed save, so a command's failure leaves no trace either);
- the followers woken once something was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from eventsourcing.persistence import Tracking

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", contravariant=True)
B = TypeVar("B")


class Batches(Protocol[M, B]):
    """What ``write_batch`` drives: an application that prepares a batch in memory, commits it
    with its position in one transaction, or discards it (``LedgerApplication``,
    ``FeedApplication``)."""

    def prepare(self, messages: Sequence[M], /) -> B: ...

    def commit(self, batch: B, tracking: Tracking | None = None, /) -> None: ...

    def discard(self, batch: B, /) -> None: ...


class WriteLock(asyncio.Lock):
    """An ``asyncio.Lock`` that tells how many tasks wait for it.

    The credit-check desk holds the lock while it has groups in flight and admits no new group
    once another writer waits, so the consumer and the commands get their turn; asyncio's lock
    keeps its waiters to itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0  # tasks suspended in acquire()

    async def acquire(self) -> Literal[True]:
        # (counted around the whole call: a free lock is taken without suspending, so no other
        # task can see that count)
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


class StoreWriter:
    """A service's writes to its event store, in turn, off the loop, waking the followers."""

    def __init__(self, on_written: Callable[[], None] = lambda: None) -> None:
        self.lock = WriteLock()
        self._on_written = on_written

    def written(self) -> None:
        """Something was written: wake the followers (those who write under ``lock`` call it)."""
        self._on_written()

    async def run(self, command: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a command that decides and saves (or raises, having saved nothing)."""
        async with self.lock:
            result = await asyncio.to_thread(command, *args, **kwargs)
        self._on_written()
        return result

    async def write_batch(
        self, sink: Batches[M, B], messages: Sequence[M], *, tracking: Tracking | None = None,
        before_commit: Callable[[B], Awaitable[Any]] | None = None,
    ) -> B:
        """Prepare messages into a batch and commit it with ``tracking`` in one transaction.

        ``before_commit`` runs in between, still in turn (the consumer dead-letters what the
        batch refused before its position moves past it). An error from ``before_commit`` or
        the commit discards the batch; every error goes up as it is.
        """
        async with self.lock:
            batch = await asyncio.to_thread(sink.prepare, messages)
            try:
                if before_commit is not None:
                    await before_commit(batch)
                await asyncio.to_thread(sink.commit, batch, tracking)
            except Exception:
                await asyncio.to_thread(sink.discard, batch)
                raise
        self._on_written()
        return batch
