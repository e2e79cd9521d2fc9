"""The ``ReplayRun`` aggregate: one replay of the ledger's read models, who asked for it and
how it ended (``services.ledger.replay.runs`` records and reads them).

It lived in ``services.ledger.replay_audit`` until the ledger was split into packages; event
stores keep the old topics (``services.ledger.replay_audit:ReplayRun...``), which are
registered below so that they still resolve to these classes.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

REPLAY_NAMESPACE = uuid5(uuid.NAMESPACE_URL, "receivables:ledger:replay-run")


class ReplayRun(Aggregate):
    """One replay of the ledger's read models."""

    @staticmethod
    def create_id(run_id: str, **_: Any) -> UUID:
        return run_aggregate_id(run_id)

    @event("ReplayRequested")
    def __init__(self, run_id: str, requested_by: str, via: str, verify: bool) -> None:
        self.run_id = run_id
        self.requested_by = requested_by
        self.via = via
        self.verify = verify
        self.status = "running"

    @event("ReplayFinished")
    def finish(self, run_id: str, status: str, position: int | None, events: int | None,
               milliseconds: int | None, detail: str | None) -> None:
        self.status = status


def run_aggregate_id(run_id: str) -> UUID:
    return uuid5(REPLAY_NAMESPACE, run_id)


# Where stores written before the move hold these classes: the aggregate's topic (in each
# created event's ``originator_topic``) and its events' topics.
FORMER_MODULE = "services.ledger.replay_audit"
FORMER_TOPICS: dict[str, type[Any]] = {
    f"{FORMER_MODULE}:ReplayRun": ReplayRun,
    **{f"{FORMER_MODULE}:ReplayRun.{name}": getattr(ReplayRun, name)
       for name in ("ReplayRequested", "ReplayFinished")},
}
for _topic, _cls in FORMER_TOPICS.items():
    register_topic(_topic, _cls)
