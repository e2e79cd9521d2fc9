"""The audit record of replays: who asked for one, how, and how it ended.

Each replay is a ``ReplayRun`` aggregate (``services.ledger.domain.replay_run``) in the
ledger's own event store, next to the customer accounts: ``ReplayRequested`` (who asked:
the bearer token's identity, or ``os:<user>`` from the command line; ``via`` api or cli;
whether to verify) when it starts, ``ReplayFinished`` (switched or failed, at which
notification position, how many events, how long, and why it failed) when it ends. The
projector keeps them in the ``ledger_replays`` read model (so a replay rebuilds its own
history too); ``GET /admin/replays`` lists them and ``GET /admin/replays/{run_id}`` shows a
run's stored events. The outbox publishes none of them (they are not facts of any
customer's account).
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from eventsourcing.domain import Aggregate

from services.ledger.domain.replay_run import ReplayRun, run_aggregate_id
from shared.eventstore import TrackedApplication


def os_principal() -> str:
    """Who runs the command line: the operating-system user."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return "os:unknown"


def record_requested(app: TrackedApplication, requested_by: str, via: str, verify: bool) -> ReplayRun:
    """Store the request (before any work): the audit trail shows a replay that never finished."""
    run = ReplayRun(run_id=str(uuid.uuid4()), requested_by=requested_by, via=via, verify=verify)
    app.save(run)
    return run


def record_finished(
    app: TrackedApplication, run: ReplayRun, status: str, *, position: int | None = None,
    events: int | None = None, milliseconds: int | None = None, detail: str | None = None,
) -> None:
    run.finish(run.run_id, status, position, events, milliseconds, detail[:2000] if detail else None)
    app.save(run)


@dataclass(frozen=True)
class RunEvent:
    version: int
    recorded_at: datetime
    type: str
    data: dict[str, Any]


def run_history(app: TrackedApplication, run_id: str) -> list[RunEvent]:
    """The stored events of one replay run, oldest first (empty if there is no such run)."""
    return [
        RunEvent(e.originator_version, e.timestamp, type(e).__name__,
                 {k: v for k, v in e.__dict__.items()
                  if k not in ("originator_id", "originator_version", "timestamp", "originator_topic")})
        for e in cast("list[Aggregate.Event]", list(app.events.get(run_aggregate_id(run_id))))
    ]
