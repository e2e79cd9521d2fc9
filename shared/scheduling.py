"""What dunning's runs and credit's reviews share: the run over the whole book for a date
(``BookRunner``: one at a time, the registry asked first, the read models caught up, the
candidates done in chunks through the ``StoreWriter``), waiting for the read models to catch
up with the event store, and a daily schedule in local time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic_time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from shared.daily_registry import DailyRegistry
from shared.eventstore import TrackedApplication
from shared.store_writer import StoreWriter

log = logging.getLogger(__name__)

App = TypeVar("App", bound=TrackedApplication)
P = ParamSpec("P")
R = TypeVar("R")


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


class BookRunner(Generic[App]):
    """A run over the whole book for a date (dunning's runs, credit's reviews).

    A run:

    1. asks the service's registry (``registry``): a date run before answers what that run
       recorded once the read models have caught up (``repeat``: nothing runs again); a date
       before the latest run is refused (the registry's refusal goes up as it is);
    2. waits until the read models have caught up with the event store, so that the
       candidates reflect every fact recorded before the run began;
    3. does the rest (``first_run``): the candidates in chunks (``in_chunks``), each loaded,
       decided and saved in one transaction through the service's ``StoreWriter`` (the
       consumer and the commands go on between chunks), then the run recorded in the registry.

    One run at a time in a process. The date is always a parameter: only the scheduler
    reads the wall clock.
    """

    what = "daily run"  # as the log and the scheduler name it

    def __init__(self, app: App, engine: Engine, writer: StoreWriter, *, chunk_size: int = 500,
                 catch_up_seconds: float = 60.0) -> None:
        self.app = app
        self.engine = engine
        self.writer = writer
        self.chunk_size = chunk_size
        self.catch_up_seconds = catch_up_seconds
        self._lock = asyncio.Lock()  # one run at a time in this process

    # ------------------------------------------------------------------ the service's parts

    def registry(self) -> DailyRegistry:
        """A fresh copy of the service's registry (blocking: called in a thread)."""
        raise NotImplementedError

    def projector_position(self, conn: Connection) -> int:
        """How far the service's projector has read the notification log."""
        raise NotImplementedError

    async def repeat(self, as_of: date, recorded: dict[str, Any]) -> dict[str, Any]:
        """The answer to a date run before (``recorded``: what the registry holds of it)."""
        return {**recorded, "repeat": True}

    async def first_run(self, as_of: date) -> dict[str, Any]:
        """Run the date's candidates and record the run; the run's answer."""
        raise NotImplementedError

    @staticmethod
    def describe(result: dict[str, Any]) -> str:
        """A run's answer in a few words, for the scheduler's log."""
        return "done"

    # ------------------------------------------------------------------ the skeleton

    async def caught_up(self) -> None:
        """Wait until the projector has processed every event stored so far."""
        await caught_up(lambda: self.app.recorder.max_notification_id() or 0,
                        lambda: self.read_now(self.projector_position), self.writer.written,
                        timeout=self.catch_up_seconds)

    async def run(self, as_of: date) -> dict[str, Any]:
        """The run for ``as_of`` (``first_run``'s answer, or ``repeat``'s for a date run before)."""
        async with self._lock:
            registry = await asyncio.to_thread(self.registry)
            recorded = registry.check(as_of)
            await self.caught_up()  # (a repeat too: its answer then agrees with the read models)
            if recorded is not None:
                return await self.repeat(as_of, recorded)
            return await self.first_run(as_of)

    async def in_chunks(self, candidates: Sequence[str], command: Callable[Concatenate[list[str], P], R],
                        *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
        """``command(chunk, *args)`` on each ``chunk_size`` of the candidates, through the writer."""
        for start in range(0, len(candidates), self.chunk_size):
            chunk = list(candidates[start:start + self.chunk_size])
            yield await self.writer.run(command, chunk, *args, **kwargs)

    def read_now(self, query: Callable[Concatenate[Connection, P], R], *args: P.args,
                 **kwargs: P.kwargs) -> R:
        """A read-model query (blocking)."""
        with self.engine.connect() as conn:
            return query(conn, *args, **kwargs)

    async def read(self, query: Callable[Concatenate[Connection, P], R], *args: P.args,
                   **kwargs: P.kwargs) -> R:
        """A read-model query, in a worker thread."""
        def read() -> R:
            return self.read_now(query, *args, **kwargs)

        return await asyncio.to_thread(read)


def daily_scheduler(runner: BookRunner[Any], run_at: time, zone: str) -> DailyScheduler:
    """The scheduler of a service's daily run, named as the runner names it."""
    return DailyScheduler(runner, run_at, zone, what=runner.what, describe=runner.describe)


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
