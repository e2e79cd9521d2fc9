"""Followers of an application's notification log: projections and the outbox relay.

Each follower reads the event store's notification log from its own position, in
batches, and records the position atomically with its own effect; a wake-up event set by
the consumer after each commit keeps latency low without busy polling.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from eventsourcing.persistence import Notification

from shared.eventstore import TrackedApplication
from shared.leadership import Leadership
from shared.metrics import ServiceMetrics
from shared.stalls import Failure, StallReporter

log = logging.getLogger(__name__)


class Follower(Protocol):
    name: str
    app: TrackedApplication  # whose notification log it follows

    def position(self) -> int:
        """The last notification id this follower has fully processed (0 for none)."""
        ...

    async def process(self, notifications: Sequence[Notification]) -> None:
        """Handle a batch and record the new position with its effect."""
        ...


class SharedLog:
    """One read of an application's notification log for all its followers in a process.

    The projector and the outbox follow the same log at about the same pace, so each batch
    would be read (and turned into notifications) twice; the second reader gets it from
    the last few batches kept here. Only what one query returned is served, and only a
    whole request: the kept run holds every notification with an id from ``_first`` to its
    last one (ids are committed in order), so a slice of it is what the store would answer.
    """

    def __init__(self, app: TrackedApplication, keep: int = 6000) -> None:
        self.app = app
        self.select_notifications = app.recorder.select_notifications
        self.keep = keep
        self._lock = threading.Lock()  # followers read from worker threads
        self._run: list[Notification] = []
        self._ids: list[int] = []
        self._first = 0

    def read(self, start: int, limit: int) -> Sequence[Notification]:
        """The notifications from id ``start`` on, at most ``limit`` of them."""
        with self._lock:
            run, ids, first = self._run, self._ids, self._first
        if run and first <= start <= ids[-1]:
            index = bisect.bisect_left(ids, start)
            if len(run) - index >= limit:
                return run[index:index + limit]
        notifications = self.select_notifications(start, limit)
        if notifications:
            self._keep(start, notifications)
        return notifications

    def _keep(self, start: int, notifications: Sequence[Notification]) -> None:
        with self._lock:
            run, ids, first = self._run, self._ids, self._first
            if run and first <= start <= ids[-1] + 1:  # continues (or overlaps) the kept run
                index = bisect.bisect_left(ids, start)
                run, ids = [*run[:index], *notifications], ids[:index] + [n.id for n in notifications]
            else:
                run, ids, first = list(notifications), [n.id for n in notifications], start
            if len(run) > self.keep:
                run, ids = run[-self.keep:], ids[-self.keep:]
                first = ids[0]
            self._run, self._ids, self._first = run, ids, first


class FollowerLoop:
    """Drive one Follower along the notification log until stopped.

    After a failure it retries (with backoff) one notification, then twice as many after
    each success up to ``batch_size``: it gets past the good events of a failed batch and
    stops on exactly the one that fails, and it is back to full batches soon after an
    outage. It tells ``stalls`` where it fails and when it moves again (``shared.stalls``),
    and never skips an event.
    """

    def __init__(
        self,
        follower: Follower,
        metrics: ServiceMetrics,
        *,
        batch_size: int = 2000,
        idle_seconds: float = 0.5,
        on_progress: Callable[[str, int], None] | None = None,
        stalls: StallReporter | None = None,
        leadership: Leadership | None = None,
        log: SharedLog | None = None,
    ) -> None:
        self.app = follower.app
        self.log = log or SharedLog(follower.app)
        self.leadership = leadership  # run only while this replica leads (shared.leadership)
        self.follower = follower
        self.on_progress = on_progress
        self.stalls: StallReporter = stalls or metrics.stalls
        self.metrics = metrics
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.standby_seconds = 1.0  # how often a replica that does not lead asks again
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def notify(self) -> None:
        self.wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    async def run(self) -> None:
        backoff = 0.2
        position: int | None = None
        name = self.follower.name
        gauge = self.metrics.follower_position.labels(name)
        # Unknown at the start: say once that it moves (a restarted child process's
        # predecessor may have reported a failure; /metrics lists the stage from then on).
        failing = True
        limit = self.batch_size
        while not self._stopping.is_set():
            attempt: Sequence[Notification] = ()
            try:
                if self.leadership is not None and not await asyncio.to_thread(self.leadership.acquire):
                    position = None  # the leader moves it meanwhile: re-read once we lead
                    if failing:  # not failing here: another replica runs it
                        self.stalls.moved(name)
                        failing = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=self.standby_seconds)
                    continue
                if position is None:
                    position = await asyncio.to_thread(self.follower.position)
                    gauge.set(position)
                attempt = await asyncio.to_thread(self.log.read, position + 1, limit)
                if attempt:
                    await self.follower.process(attempt)
                    position = attempt[-1].id
                    gauge.set(position)
                    if self.on_progress is not None:
                        self.on_progress(name, position)
                    backoff = 0.2
                if failing:
                    self.stalls.moved(name)
                    failing = False
                if attempt and len(attempt) == limit:
                    limit = min(limit * 2, self.batch_size)
                    continue
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.idle_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.metrics.errors.labels(name).inc()
                failure = self._failure(attempt, position, error)
                self.stalls.failed(failure, cause=error)
                failing = True
                limit = 1
                log.exception("%s failed on %s; retrying in %.1fs", name, failure.where or "its position",
                              backoff)
                position = None  # re-read from the store: the failed batch may or may not be in
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _failure(self, attempt: Sequence[Notification], position: int | None, error: Exception) -> Failure:
        """Where the loop failed: the one notification it tried, the batch, or the next one."""
        name = self.follower.name
        if len(attempt) == 1:
            notification = attempt[0]
            return Failure.of(name, f"notification {notification.id}", {
                "notification_id": notification.id, "topic": notification.topic,
                "originator_id": str(notification.originator_id),
                "originator_version": notification.originator_version,
            }, error)
        if attempt:
            first, last = attempt[0].id, attempt[-1].id
            return Failure.of(name, f"notifications {first}-{last}",
                              {"notification_id": first, "last_notification_id": last}, error)
        if position is None:  # its own position could not be read
            return Failure.of(name, "", None, error)
        return Failure.of(name, f"notification {position + 1}", {"notification_id": position + 1}, error)
