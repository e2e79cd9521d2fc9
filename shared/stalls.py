"""Stalls: a loop of the service that keeps failing on the same event, and since when.

Every loop (the Kafka consumer, each follower of the notification log) pauses on an error
and retries, so an outage passes by itself. A failure that does not pass (an event a read
model cannot hold, a bug) would be retried forever while the service looked healthy. So
each loop tells the service's :class:`Stalls` where it failed and when it moved again. A
stage that has failed on the same event for longer than ``stuck_after`` seconds is
*stuck*: ``/health/ready`` answers 503 naming the stage, the event and the error, and
``/metrics`` shows ``receivables_stuck``. Nothing is skipped: the loop keeps retrying,
and readiness comes back by itself once it gets past (deploy/README.md, the runbook).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# A stall counts while its stage is still failing: its loop retries within seconds, so a
# stall without a failure for this long (or ``stuck_after``, if longer) stopped retrying
# here (its partition went to another replica, its follower's leadership to another one).
STILL_FAILING_SECONDS = 30.0
MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt of a loop: its stage, the event it failed on, the error."""

    stage: str  # the follower's name, or "consumer"
    where: str  # the event as text: "notification 150", "ar.invoices[2]@57"; "" if unknown
    event: dict[str, Any] | None  # the same as data, for the readiness body
    error_type: str
    message: str
    lane: str = ""  # the consumer's partition ("ar.invoices[2]"): each fails or moves on its own

    @classmethod
    def of(cls, stage: str, where: str, event: dict[str, Any] | None, error: BaseException,
           *, lane: str = "") -> Failure:
        # The first line only: SQLAlchemy adds the statement and its parameters (the data)
        # on the next ones, and /health/ready answers without a token.
        lines = str(error).strip().splitlines()
        message = lines[0][:MESSAGE_CHARS] if lines else ""
        return cls(stage, where, event, type(error).__name__, message, lane)

    def as_report(self) -> dict[str, Any]:
        """The line a followers' child process writes to its parent (``shared.worker``)."""
        return {"error": self.stage, "where": self.where, "event": self.event, "type": self.error_type,
                "message": self.message, "lane": self.lane}

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Failure:
        return cls(str(report["error"]), str(report.get("where") or ""), report.get("event"),
                   str(report.get("type") or "Error"), str(report.get("message") or ""),
                   str(report.get("lane") or ""))


@dataclass(slots=True)
class Stall:
    """A stage failing on one event: the latest failure, since when, how often."""

    failure: Failure
    since: float  # wall-clock seconds of the first failure on this event
    last: float  # of the latest
    failures: int = 0
    logged: bool = False  # the STUCK line was written
    cause: int | None = None  # id() of the latest exception, while it propagates

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.since)

    def summary(self, now: float) -> str:
        f = self.failure
        return (f"{f.stage} stuck on {f.where or 'its next step'} for {self.seconds(now):.0f}s: "
                f"{f.error_type}: {f.message}")

    def as_dict(self, now: float) -> dict[str, Any]:
        f = self.failure
        return {
            "stage": f.stage,
            "event": f.event,
            "error": {"type": f.error_type, "message": f.message},
            "failing_since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "seconds": round(self.seconds(now), 1),
            "failures": self.failures,
        }


class StallReporter(Protocol):
    """Where a loop tells its failures and its moving again: the service's :class:`Stalls`,
    or in a followers' child process the line to its parent."""

    def failed(self, failure: Failure, *, cause: BaseException | None = None) -> None: ...
    def moved(self, stage: str, lane: str | None = None) -> None: ...


class Stalls:
    """The stalls of one service's loops, for its readiness and its metrics."""

    def __init__(self, stuck_after: float = 60.0, *, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.stuck_after = stuck_after
        self.clock = clock
        self._stalls: dict[tuple[str, str], Stall] = {}
        self._stages: set[str] = set()  # every stage heard of, shown in /metrics even at 0
        if registry is not None:
            registry.register(_StallCollector(self))

    @property
    def window(self) -> float:
        return max(self.stuck_after, STILL_FAILING_SECONDS)

    def failed(self, failure: Failure, *, cause: BaseException | None = None) -> None:
        """A loop failed on ``failure.where``; the same event as before keeps its start time."""
        now = self.clock()
        key = (failure.stage, failure.lane)
        self._stages.add(failure.stage)
        stall = self._stalls.get(key)
        if stall is None or stall.failure.where != failure.where or now - stall.last > self.window:
            stall = self._stalls[key] = Stall(failure, since=now, last=now)
        stall.failure, stall.last, stall.failures = failure, now, stall.failures + 1
        stall.cause = None if cause is None else id(cause)
        if not stall.logged and stall.seconds(now) >= self.stuck_after:
            stall.logged = True
            log.error("STUCK: %s; it keeps retrying and skips nothing. /health/ready answers 503 until "
                      "it gets past (deploy/README.md: a stuck follower or consumer)", stall.summary(now))

    def moved(self, stage: str, lane: str | None = None) -> None:
        """The stage (one lane of it, if given) got past whatever it failed on."""
        self._stages.add(stage)
        if not self._stalls:
            return
        for key in [k for k in self._stalls if k[0] == stage and (lane is None or k[1] == lane)]:
            stall = self._stalls.pop(key)
            if stall.logged:
                log.warning("%s got past %s after %.0fs", stage, stall.failure.where or "its failure",
                            stall.seconds(self.clock()))

    def recorded(self, error: BaseException) -> bool:
        """Whether a loop already told of this exception (on its way up to an outer loop)."""
        for stall in self._stalls.values():
            if stall.cause == id(error):
                stall.cause = None  # told once: an id may be reused by a later exception
                return True
        return False

    def failing(self) -> list[Stall]:
        """The stages failing now, stuck or not yet."""
        now = self.clock()
        for key in [k for k, s in self._stalls.items() if now - s.last > self.window]:
            del self._stalls[key]
        return list(self._stalls.values())

    def stuck(self) -> list[Stall]:
        """The stages that have failed on the same event for longer than ``stuck_after``."""
        now = self.clock()
        return [s for s in self.failing() if s.seconds(now) >= self.stuck_after]

    def samples(self) -> Iterator[tuple[str, str, bool, float]]:
        """(stage, event, stuck, seconds failing) for every stage heard of."""
        now = self.clock()
        failing = self.failing()
        for stage in sorted(self._stages):
            mine = [s for s in failing if s.failure.stage == stage]
            if not mine:
                yield stage, "", False, 0.0
            for stall in mine:
                seconds = stall.seconds(now)
                yield stage, stall.failure.where, seconds >= self.stuck_after, seconds


class _StallCollector:
    def __init__(self, stalls: Stalls) -> None:
        self.stalls = stalls

    def collect(self) -> Iterator[Metric]:
        stuck = GaugeMetricFamily(
            "receivables_stuck",
            "1 while a stage has failed on the same event for longer than RECEIVABLES_STUCK_AFTER_SECONDS",
            labels=["stage", "event"],
        )
        seconds = GaugeMetricFamily(
            "receivables_stuck_seconds", "How long a stage has been failing on the same event (0: it moves)",
            labels=["stage", "event"],
        )
        for stage, where, is_stuck, failing_for in self.stalls.samples():
            stuck.add_metric([stage, where], 1.0 if is_stuck else 0.0)
            seconds.add_metric([stage, where], round(failing_for, 1))
        yield stuck
        yield seconds
