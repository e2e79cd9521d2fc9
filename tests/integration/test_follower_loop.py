"""A follower that fails on one event: the loop finds that event, skips nothing, and moves
on once it goes through (a real event store; a follower of the test's own)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Notification

from shared.eventstore import TrackedApplication, eventsourcing_env
from shared.follower import FollowerLoop
from shared.metrics import ServiceMetrics
from shared.runtime import FollowerWorker
from shared.settings import ServiceSettings
from tests.integration.ledger_harness import poll

WAIT = 30.0
NOTES = 300
REFUSED = 200


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class Notes(TrackedApplication):
    name = "notes"


class Picky:
    """Keeps what it is given in order, but refuses one notification while told to."""

    name = "picky"

    def __init__(self, app: Notes, refused: int | None) -> None:
        self.app = app
        self.refused = refused
        self.done: list[int] = []

    def position(self) -> int:
        return self.done[-1] if self.done else 0

    async def process(self, notifications: Sequence[Notification]) -> None:
        if any(n.id == self.refused for n in notifications):
            raise ValueError(f"notification {self.refused} refused")
        self.done.extend(n.id for n in notifications)


async def test_a_follower_stops_on_exactly_the_event_it_cannot_process_and_goes_on_once_it_can(
    database_url: str,
) -> None:
    app = Notes(env=eventsourcing_env(database_url))
    try:
        app.save(*(Note(text=f"note {n}") for n in range(NOTES)))
        follower = Picky(app, refused=REFUSED)
        metrics = ServiceMetrics("test")
        stalls = metrics.stalls
        stalls.stuck_after = 0.5
        loop = FollowerLoop(follower, metrics, batch_size=64, idle_seconds=0.05)
        task = asyncio.create_task(loop.run())
        try:
            async def stuck() -> list[dict[str, Any]]:
                return [s.as_dict(stalls.clock()) for s in stalls.stuck()]

            [stall] = await poll(stuck, lambda found: len(found) == 1, timeout=WAIT, what="stuck")
            assert stall["stage"] == "picky"
            assert stall["event"]["notification_id"] == REFUSED
            assert stall["event"]["topic"].endswith("Note.Written")
            assert stall["error"] == {"type": "ValueError", "message": f"notification {REFUSED} refused"}
            assert follower.done == list(range(1, REFUSED))  # all before it, once each; none after

            follower.refused = None
            await poll(lambda: asyncio.sleep(0, follower.done), lambda done: len(done) == NOTES,
                       timeout=WAIT, what="every note after the cause is gone")
            assert follower.done == list(range(1, NOTES + 1))
            assert stalls.failing() == []
        finally:
            await loop.stop()
            await asyncio.wait_for(task, WAIT)
    finally:
        app.close()


async def test_a_followers_process_that_keeps_dying_is_a_stall_too(tmp_path: Any) -> None:
    settings = ServiceSettings(database_url=f"sqlite:///{tmp_path / 'x.db'}", auth="disabled", dev_mode=True)
    metrics = ServiceMetrics("test")
    metrics.stalls.stuck_after = 0.5
    worker = FollowerWorker("tests.integration.no_such_followers", settings, metrics)
    task = asyncio.create_task(worker.run())
    try:
        async def stuck() -> list[dict[str, Any]]:
            return [s.as_dict(metrics.stalls.clock()) for s in metrics.stalls.stuck()]

        [stall] = await poll(stuck, lambda found: len(found) == 1, timeout=WAIT, what="stuck")
        assert stall["stage"] == "followers-process" and stall["event"] is None
        assert stall["error"] == {"type": "ProcessExited", "message": "the followers process exited with 1"}
    finally:
        await worker.stop()
        await asyncio.wait_for(task, WAIT)
