"""An event store written before the ledger was split into packages still loads.

``ReplayRun`` moved from ``services.ledger.replay_audit`` to
``services.ledger.domain.replay_run``; the library stores each event under the topic
``module:Class`` of its class (and the aggregate's in the created event's
``originator_topic``). The rows below are what the code before the move stored (copied from
a SQLite store it wrote: topics and state bytes as they were); they are put into a fresh
store as they are, and must load, list, project and relay as they did.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from services.ledger.application import LedgerApplication
from services.ledger.domain import ReplayRun
from services.ledger.outbound import StoredTranslator
from services.ledger.read.projections import EventDecoder
from services.ledger.replay import runs

RUN_ID = "6826f58e-1287-41ef-b467-d05e3c74d2f3"
AGGREGATE_ID = UUID("b35d0221-bd98-52b3-b134-7d5ae4905b23")
OLD_ROWS = [
    StoredEvent(
        originator_id=AGGREGATE_ID, originator_version=1,
        topic="services.ledger.replay_audit:ReplayRun.ReplayRequested",
        state=b'{"timestamp":"2026-12-07T05:21:04.949872+00:00",'
              b'"originator_topic":"services.ledger.replay_audit:ReplayRun",'
              b'"run_id":"6826f58e-1287-41ef-b467-d05e3c74d2f3","requested_by":"os:alice",'
              b'"via":"cli","verify":true}',
    ),
    StoredEvent(
        originator_id=AGGREGATE_ID, originator_version=2,
        topic="services.ledger.replay_audit:ReplayRun.ReplayFinished",
        state=b'{"timestamp":"2026-12-07T05:21:04.951184+00:00",'
              b'"run_id":"6826f58e-1287-41ef-b467-d05e3c74d2f3","status":"switched","position":42,'
              b'"events":40,"milliseconds":1234,"detail":"verified: identical to the live tables"}',
    ),
]


def old_store() -> LedgerApplication:
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.recorder.insert_events(OLD_ROWS)
    return app


def test_the_old_topics_name_the_moved_classes() -> None:
    assert resolve_topic("services.ledger.replay_audit:ReplayRun") is ReplayRun
    requested = resolve_topic("services.ledger.replay_audit:ReplayRun.ReplayRequested")
    assert requested is ReplayRun.ReplayRequested
    assert resolve_topic("services.ledger.replay_audit:ReplayRun.ReplayFinished") is ReplayRun.ReplayFinished
    # new events are stored under the new module
    assert get_topic(ReplayRun) == "services.ledger.domain.replay_run:ReplayRun"


def test_a_run_stored_under_the_old_topics_loads_as_before() -> None:
    app = old_store()
    run = app.repository.get(AGGREGATE_ID)
    assert isinstance(run, ReplayRun)
    assert (run.id, run.version, run.run_id, run.requested_by, run.via, run.verify, run.status) == (
        AGGREGATE_ID, 2, RUN_ID, "os:alice", "cli", True, "switched"
    )
    assert run.created_on == datetime(2026, 12, 7, 5, 21, 4, 949872, tzinfo=UTC)
    assert run.modified_on == datetime(2026, 12, 7, 5, 21, 4, 951184, tzinfo=UTC)
    assert [(e.version, e.type, e.data) for e in runs.run_history(app, RUN_ID)] == [
        (1, "ReplayRequested", {"run_id": RUN_ID, "requested_by": "os:alice", "via": "cli", "verify": True}),
        (2, "ReplayFinished", {"run_id": RUN_ID, "status": "switched", "position": 42, "events": 40,
                               "milliseconds": 1234, "detail": "verified: identical to the live tables"}),
    ]


def test_an_old_run_goes_on_under_the_new_topics() -> None:
    app = old_store()
    run = app.repository.get(AGGREGATE_ID)
    runs.record_finished(app, run, "failed", detail="again")
    notifications = app.recorder.select_notifications(start=1, limit=10)
    assert [n.topic for n in notifications] == [
        "services.ledger.replay_audit:ReplayRun.ReplayRequested",
        "services.ledger.replay_audit:ReplayRun.ReplayFinished",
        "services.ledger.domain.replay_run:ReplayRun.ReplayFinished",
    ]
    reloaded = app.repository.get(AGGREGATE_ID)
    assert (reloaded.version, reloaded.status) == (3, "failed")


def test_the_projector_and_the_relay_read_old_rows_as_before() -> None:
    app = old_store()
    notifications = app.recorder.select_notifications(start=1, limit=10)
    decoded = EventDecoder(app)(notifications)
    assert [(position, name, state["run_id"]) for position, name, state in decoded] == [
        (1, "ReplayRequested", RUN_ID), (2, "ReplayFinished", RUN_ID),
    ]
    relay = StoredTranslator(app)
    assert [relay(n) for n in notifications] == [[], []]  # no account's facts: nothing published


def test_the_old_topics_resolve_in_a_process_that_only_imports_the_application() -> None:
    # The followers' child process imports the application, not the replay modules.
    code = ("import services.ledger.application; from eventsourcing.utils import resolve_topic; "
            "print(resolve_topic('services.ledger.replay_audit:ReplayRun.ReplayFinished').__qualname__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ReplayRun.ReplayFinished"
