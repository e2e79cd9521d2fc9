"""The event store's one writer within a process: the consumer's batches, the commands and the
credit-check desk take this lock in turn (across processes, SQLite's ``shared.db.WriteTurn``
and PostgreSQL's table lock order the writers)."""

from __future__ import annotations

import asyncio
from typing import Literal


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
