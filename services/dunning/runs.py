"""Dunning runs over the whole book.

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

The skeleton (one run at a time, the registry, the catching up, the chunks) is
``shared.scheduling.BookRunner``; the scheduler, ``shared.scheduling.daily_scheduler``.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic_time
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection

from services.dunning import queries
from services.dunning.application import DunningApplication
from services.dunning.domain.registry import RunRegistry, run_id
from services.dunning.outbound import notice_message
from shared.scheduling import BookRunner

log = logging.getLogger(__name__)


class DunningRunner(BookRunner[DunningApplication]):
    """The dunning run of a date: ``{"run_id", "as_of", "notices", ...}``."""

    what = "dunning run"

    def registry(self) -> RunRegistry:
        return self.app.run_registry()

    def projector_position(self, conn: Connection) -> int:
        return queries.projector_position(conn)

    async def repeat(self, as_of: date, recorded: dict[str, Any]) -> dict[str, Any]:
        return {**recorded, "repeat": True, "notices": await self.read(queries.notices_of, as_of)}

    async def first_run(self, as_of: date) -> dict[str, Any]:
        started = monotonic_time.monotonic()
        book = await asyncio.to_thread(self.app.policy_book)
        collectors = await asyncio.to_thread(self.app.collector_book)
        # the collectors or their rules changed since the last run: it assigns every customer again
        everyone = collectors.version != (await asyncio.to_thread(self.registry)).collectors_version
        earlier = await self.read(queries.notices_of, as_of)  # a run of this date interrupted before
        candidates = await self.read(lambda conn: list(queries.run_candidates(conn, as_of, book,
                                                                              everyone=everyone)))
        issued: list[dict[str, Any]] = []
        customers = broken = 0
        async for result in self.in_chunks(candidates, self.app.run_chunk, as_of, book, collectors):
            issued.extend(notice_message(n) for n in result.notices)
            customers += result.customers
            broken += result.broken_promises
        known = {n["notice_id"] for n in issued}
        notices = [n for n in earlier if n["notice_id"] not in known] + issued
        summary = await self.writer.run(self.app.record_run, as_of, notices=len(notices),
                                        customers=customers, broken_promises=broken,
                                        collectors_version=collectors.version)
        log.info("dunning run %s: %d candidates, %d notices, %d broken promises in %.2fs",
                 as_of, len(candidates), len(notices), broken, monotonic_time.monotonic() - started)
        return {**summary, "run_id": run_id(as_of), "repeat": False, "candidates": len(candidates),
                "notices": notices}

    @staticmethod
    def describe(result: dict[str, Any]) -> str:
        return f"{len(result['notices'])} notices"
