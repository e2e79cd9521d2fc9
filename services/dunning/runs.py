"""Dunning runs over the whole book, and the daily scheduler that starts them.

A run for a date:

1. asks the run registry: a date already run answers with that run's notices (nothing new
   is issued); a date before the latest run is refused (``RunOutOfOrder``);
2. waits until the read models have caught up with the event store, so that the
   candidates (``dunning_accounts.wake_date <= as_of``, see ``queries.run_candidates``)
   reflect every fact recorded before the run began;
3. runs the candidates in chunks, each chunk loaded, decided and saved in one transaction
   by the service's ``StoreWriter`` (the consumer goes on between chunks);
4. records the run in the registry. A run interrupted before that is simply run again:
   accounts already done for the date do nothing (runs only go forward per account), and
   their notices, read back from the read model, are part of the answer.

The run date is always a parameter. Only the scheduler reads the wall clock, to know which
local date it is when the configured time comes.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic_time
from datetime import date, time
from typing import Any

from sqlalchemy import Engine

from services.dunning import queries
from services.dunning.application import DunningApplication
from services.dunning.domain.registry import run_id
from services.dunning.outbound import notice_message
from shared import scheduling
from shared.scheduling import DailyScheduler
from shared.store_writer import StoreWriter

log = logging.getLogger(__name__)


class DunningRunner:
    def __init__(self, app: DunningApplication, engine: Engine, writer: StoreWriter, *, chunk_size: int = 500,
                 catch_up_seconds: float = 60.0) -> None:
        self.app = app
        self.engine = engine
        self.writer = writer
        self.chunk_size = chunk_size
        self.catch_up_seconds = catch_up_seconds
        self._run_lock = asyncio.Lock()  # one run at a time in this process

    async def caught_up(self) -> None:
        """Wait until the projector has processed every event stored so far."""
        await scheduling.caught_up(lambda: self.app.recorder.max_notification_id() or 0,
                                   self._projector_position, self.writer.written,
                                   timeout=self.catch_up_seconds)

    async def run(self, as_of: date) -> dict[str, Any]:
        """The run for ``as_of``: ``{"run_id", "as_of", "notices", ...}``."""
        async with self._run_lock:
            registry = await asyncio.to_thread(self.app.run_registry)
            recorded = registry.check(as_of)
            await self.caught_up()
            if recorded is not None:
                return {**recorded, "repeat": True, "notices": await self._notices_of(as_of)}
            started = monotonic_time.monotonic()
            book = await asyncio.to_thread(self.app.policy_book)
            earlier = await self._notices_of(as_of)  # a run of this date interrupted before
            candidates = await asyncio.to_thread(self._candidates, as_of, book)
            issued: list[dict[str, Any]] = []
            customers = broken = 0
            for start in range(0, len(candidates), self.chunk_size):
                chunk = candidates[start:start + self.chunk_size]
                result = await self.writer.run(self.app.run_chunk, chunk, as_of, book)
                issued.extend(notice_message(n) for n in result.notices)
                customers += result.customers
                broken += result.broken_promises
            known = {n["notice_id"] for n in issued}
            notices = [n for n in earlier if n["notice_id"] not in known] + issued
            summary = await self.writer.run(self.app.record_run, as_of, notices=len(notices),
                                            customers=customers, broken_promises=broken)
            log.info("dunning run %s: %d candidates, %d notices, %d broken promises in %.2fs",
                     as_of, len(candidates), len(notices), broken, monotonic_time.monotonic() - started)
            return {**summary, "run_id": run_id(as_of), "repeat": False, "candidates": len(candidates),
                    "notices": notices}

    def _projector_position(self) -> int:
        with self.engine.connect() as conn:
            return queries.projector_position(conn)

    def _candidates(self, as_of: date, book: Any) -> list[str]:
        with self.engine.connect() as conn:
            return list(queries.run_candidates(conn, as_of, book))

    async def _notices_of(self, as_of: date) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return queries.notices_of(conn, as_of)

        return await asyncio.to_thread(read)


def daily_scheduler(runner: DunningRunner, run_at: time, zone: str) -> DailyScheduler:
    return DailyScheduler(runner, run_at, zone, what="dunning run",
                          describe=lambda result: f"{len(result['notices'])} notices")
