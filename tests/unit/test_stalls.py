"""Stalls: when a loop failing on the same event counts as stuck, and what it shows."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import IntegrityError

from shared.stalls import Failure, Stalls
from tests.integration.ledger_harness import parse_metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def failure(where: str = "notification 7", stage: str = "ledger-projections", lane: str = "") -> Failure:
    return Failure(stage, where, {"notification_id": 7}, "DataError", "bigint out of range", lane)


def test_failing_on_the_same_event_for_longer_than_stuck_after_is_stuck() -> None:
    clock = Clock()
    stalls = Stalls(stuck_after=60, clock=clock)
    stalls.failed(failure())
    clock.now += 59
    stalls.failed(failure())
    assert stalls.stuck() == []
    assert [s.failure.where for s in stalls.failing()] == ["notification 7"]
    clock.now += 2  # stuck between two retries too
    [stall] = stalls.stuck()
    assert stall.as_dict(clock.now) == {
        "stage": "ledger-projections", "event": {"notification_id": 7},
        "error": {"type": "DataError", "message": "bigint out of range"},
        "failing_since": "1970-01-12T13:46:40+00:00", "seconds": 61.0, "failures": 2,
    }


def test_another_event_starts_the_clock_again_and_moving_clears_it() -> None:
    clock = Clock()
    stalls = Stalls(stuck_after=10, clock=clock)
    stalls.failed(failure("notifications 1-2000"))
    clock.now += 9
    stalls.failed(failure("notification 150"))  # the batch, retried one at a time
    clock.now += 9
    assert stalls.stuck() == []
    clock.now += 2
    assert [s.failure.where for s in stalls.stuck()] == ["notification 150"]
    stalls.moved("ledger-projections")
    assert stalls.stuck() == [] and stalls.failing() == []


def test_a_consumer_partition_moves_on_its_own() -> None:
    clock = Clock()
    stalls = Stalls(stuck_after=5, clock=clock)
    stalls.failed(failure("ar.invoices[0]@10", "consumer", "ar.invoices[0]"))
    clock.now += 6
    stalls.moved("consumer", "ar.invoices[1]")  # another partition committed
    assert [s.failure.where for s in stalls.stuck()] == ["ar.invoices[0]@10"]
    stalls.moved("consumer", "ar.invoices[0]")
    assert stalls.stuck() == []


def test_a_stage_that_stopped_failing_here_is_forgotten() -> None:
    clock = Clock()
    stalls = Stalls(stuck_after=5, clock=clock)
    stalls.failed(failure())
    clock.now += 6
    assert stalls.stuck()
    clock.now += 31  # no retry here any more (its partition or leadership moved away)
    assert stalls.stuck() == [] and stalls.failing() == []


def test_an_exception_told_by_an_inner_loop_is_recognised() -> None:
    stalls = Stalls()
    error = ValueError("boom")
    stalls.failed(Failure.of("consumer", "ar.invoices[0]@3", None, error, lane="ar.invoices[0]"), cause=error)
    assert stalls.recorded(error)
    assert not stalls.recorded(ValueError("boom"))


def test_the_message_is_the_first_line_only() -> None:
    error = IntegrityError("INSERT INTO ledger_invoices VALUES (?)", ("secret customer",),
                           Exception("refused by a trigger"))
    made = Failure.of("ledger-projections", "notification 3", None, error)
    assert made.error_type == "IntegrityError"
    assert made.message == "(builtins.Exception) refused by a trigger"
    assert Failure.from_report(made.as_report()) == made


def test_metrics_show_every_stage_heard_of_with_the_event_it_is_stuck_on() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    stalls = Stalls(stuck_after=5, registry=registry, clock=clock)
    stalls.moved("outbox")
    stalls.failed(failure())
    clock.now += 7.5
    samples = parse_metrics(generate_latest(registry).decode())
    assert samples["receivables_stuck{event=notification 7,stage=ledger-projections}"] == 1
    assert samples["receivables_stuck_seconds{event=notification 7,stage=ledger-projections}"] == 7.5
    assert samples["receivables_stuck{event=,stage=outbox}"] == 0
    stalls.moved("ledger-projections")
    samples = parse_metrics(generate_latest(registry).decode())
    assert samples["receivables_stuck{event=,stage=ledger-projections}"] == 0
    assert "receivables_stuck{event=notification 7,stage=ledger-projections}" not in samples
