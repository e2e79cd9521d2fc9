"""Dunning runs over the whole book, and the daily scheduler that starts them.

A run for a date:

1. asks the run registry: a date already run answers with that run's notices (nothing new
   is issued); a date before the latest run is refused (``RunOutOfOrder``);
2. waits until the read models have caught up with the event store, so that the
   candidates (``dunning_accounts.wake_date <= as_of``, see ``queries.run_candidates``)
   reflect every fact recorded before the run began;
3. runs the candidates in chunks, each chunk loaded, decided and saved in one transaction
   under the service's write lock (the consumer goes on between chunks);
4. records the run in the registry. A run interrupted before that is simply run again:
   accounts already done for the date do nothing (runs only go forward per account), and
   their notices, read back from the read model, are part of the answer.

The run date is always a parameter. Only the scheduler reads the wall clock, to know which
local date it is when the configured time comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic_time
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from services.dunning import queries
from services.dunning.application import DunningApplication
from services.dunning.domain.registry import run_id
from services.dunning.outbound import notice_message

log = logging.getLogger(__name__)


class ReadModelsBehind(RuntimeError):
    """The projector did not catch up with the event store in time."""


class DunningRunner:
    def __init__(self, app: DunningApplication, engine: Engine, write_lock: asyncio.Lock,
                 on_committed: Callable[[], None] = lambda: None, *, chunk_size: int = 500,
                 catch_up_seconds: float = 60.0) -> None:
        self.app = app
        self.engine = engine
        self.write_lock = write_lock
        self.on_committed = on_committed
        self.chunk_size = chunk_size
        self.catch_up_seconds = catch_up_seconds
        self._run_lock = asyncio.Lock()  # one run at a time in this process

    async def caught_up(self) -> None:
        """Wait until the projector has processed every event stored so far."""
        target = await asyncio.to_thread(lambda: self.app.recorder.max_notification_id() or 0)
        deadline = monotonic_time.monotonic() + self.catch_up_seconds
        while True:
            position = await asyncio.to_thread(self._projector_position)
            if position >= target:
                return
            if monotonic_time.monotonic() > deadline:
                raise ReadModelsBehind(f"read models at {position}, event store at {target}")
            self.on_committed()  # wake the projector, in case it sleeps
            await asyncio.sleep(0.02)

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
                async with self.write_lock:
                    result = await asyncio.to_thread(self.app.run_chunk, chunk, as_of, book)
                issued.extend(notice_message(n) for n in result.notices)
                customers += result.customers
                broken += result.broken_promises
                self.on_committed()
            known = {n["notice_id"] for n in issued}
            notices = [n for n in earlier if n["notice_id"] not in known] + issued
            async with self.write_lock:
                summary = await asyncio.to_thread(
                    self.app.record_run, as_of, notices=len(notices), customers=customers,
                    broken_promises=broken)
            self.on_committed()
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


class DailyScheduler:
    """Runs dunning once a day at ``run_at`` local time (``zone``), for that local date.

    On start, a run for today is made at once if the time has passed and today has not
    been run (a service restarted late catches up; a repeat is a no-op anyway).
    """

    def __init__(self, runner: DunningRunner, run_at: time, zone: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(ZoneInfo("UTC"))) -> None:
        self.runner = runner
        self.run_at = run_at
        self.zone = ZoneInfo(zone)
        self.clock = clock
        self._stopping = asyncio.Event()

    def next_run(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        today = datetime.combine(local.date(), self.run_at, tzinfo=self.zone)
        return today if today > local else datetime.combine(
            local.date() + timedelta(days=1), self.run_at, tzinfo=self.zone)

    async def run(self) -> None:
        local_now = self.clock().astimezone(self.zone)
        if local_now.time() >= self.run_at:
            await self._run_for(local_now.date())
        while not self._stopping.is_set():
            due = self.next_run(self.clock())
            wait = (due - self.clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(wait, 0))
            if not self._stopping.is_set():
                await self._run_for(due.astimezone(self.zone).date())

    async def _run_for(self, day: date) -> None:
        try:
            result = await self.runner.run(day)
            log.info("scheduled dunning run for %s: %d notices%s", day, len(result["notices"]),
                     " (already run)" if result.get("repeat") else "")
        except Exception:
            log.exception("scheduled dunning run for %s failed", day)

    async def stop(self) -> None:
        self._stopping.set()
