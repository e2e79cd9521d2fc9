"""What dunning's runs and credit's reviews share: a daily schedule in local time, and
waiting for the read models to catch up with the event store before a run reads them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic_time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


class ReadModelsBehind(RuntimeError):
    """The projector did not catch up with the event store in time."""


async def caught_up(
    stored: Callable[[], int], projected: Callable[[], int], wake: Callable[[], None], *, timeout: float,
) -> None:
    """Wait until the projector (``projected``, its position) has processed every event stored so
    far (``stored``, the store's max notification id), waking it meanwhile in case it sleeps."""
    target = await asyncio.to_thread(stored)
    deadline = monotonic_time.monotonic() + timeout
    while True:
        position = await asyncio.to_thread(projected)
        if position >= target:
            return
        if monotonic_time.monotonic() > deadline:
            raise ReadModelsBehind(f"read models at {position}, event store at {target}")
        wake()
        await asyncio.sleep(0.02)


class DailyRunner(Protocol):
    def run(self, as_of: date) -> Awaitable[dict[str, Any]]: ...


class DailyScheduler:
    """Calls ``runner.run(day)`` once a day at ``run_at`` local time (``zone``), for that local date.

    On start, today's run is made at once if the time has passed (a service restarted late
    catches up; a repeat is a no-op anyway). The only place the services read the clock.
    """

    def __init__(self, runner: DailyRunner, run_at: time, zone: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(ZoneInfo("UTC")), *,
                 what: str = "daily run",
                 describe: Callable[[dict[str, Any]], str] = lambda _: "done") -> None:
        self.runner = runner
        self.run_at = run_at
        self.zone = ZoneInfo(zone)
        self.clock = clock
        self.what = what
        self.describe = describe
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
            log.info("scheduled %s for %s: %s%s", self.what, day, self.describe(result),
                     " (a repeat)" if result.get("repeat") else "")
        except Exception:
            log.exception("scheduled %s for %s failed", self.what, day)

    async def stop(self) -> None:
        self._stopping.set()
