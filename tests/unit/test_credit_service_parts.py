"""Unit tests of the credit service's own parts: the review registry, decoding, the scheduler."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.credit.domain import CreditAccount, default_rules
from services.credit.domain.publication import PUBLISHING
from services.credit.outbound import stored_translator, translate
from shared.erp_events import InvalidMessage
from shared.ledger_feed import decode
from shared.scheduling import DailyScheduler
from tests.unit.ledger_feed_customer import sent

D = date.fromisoformat


def test_decoding_names_the_field_and_skips_unknown_ledger_types() -> None:
    fact = decode(sent("customer.upserted", {"customer_id": "C1", "name": "One",
                                             "credit_limit": {"currency": "EUR", "amount": "100.00"}}))
    assert fact.data["credit_limit"] == {"currency": "EUR", "amount": "100.00"}
    assert fact.data["origin"] == {"source": "erp/x", "id": "e1", "type": "customer.upserted"}
    with pytest.raises(InvalidMessage, match=r"data\.credit_limit\.amount"):
        decode(sent("customer.upserted", {"customer_id": "C1", "name": "One",
                                          "credit_limit": {"currency": "EUR", "amount": 100}}))
    with pytest.raises(InvalidMessage, match=r"data\.change"):
        decode(sent("ledger.unapplied_cash_changed", {"customer_id": "C1", "currency": "EUR", "change": 5}))
    assert decode(sent("ledger.unapplied_cash_changed",
                       {"customer_id": "C1", "currency": "EUR", "change": "-5.00"})).known
    assert not decode(sent("ledger.something_new", {"customer_id": "C1"})).known
    with pytest.raises(InvalidMessage, match="type"):
        decode(sent("invoice.issued", {"customer_id": "C1"}))
    with pytest.raises(InvalidMessage, match="key"):
        decode(sent("ledger.customer_updated", {"customer_id": "C1", "name": "One"}), key=b"C2")


def test_only_decisions_are_published_with_ids_from_the_stored_event() -> None:
    from services.credit.domain import CreditAccount

    account = CreditAccount("C1")
    account.set_limit("EUR", Decimal("100.00"), "carol")
    account.check("O1", Decimal("10.00"), "EUR", D("2025-03-01"))
    hold = account.place_manual_hold("alice", "call first")
    events = account.collect_events()
    messages = [m for e in events for m in translate(e)]
    assert [orjson.loads(m.value)["type"] for m in messages] == ["credit.limit_changed", "credit.hold_placed"]
    placed = orjson.loads(messages[1].value)
    assert (placed["id"], placed["subject"], messages[1].key) == (
        f"credit:{account.id}:4:0", "C1", "C1")
    assert placed["data"]["hold_id"] == hold["hold_id"]
    assert [orjson.loads(m.value)["id"] for m in messages] == [
        orjson.loads(m.value)["id"] for e in events for m in translate(e)]  # the same ids again


async def test_the_scheduler_reviews_today_on_start_once_its_time_has_passed() -> None:
    done: list[date] = []

    class Runner:
        async def run(self, day: date) -> dict[str, Any]:
            done.append(day)
            await scheduler.stop()
            return {"customers": 0, "repeat": False}

    zone = "Europe/Berlin"
    # 23:30 UTC on March 1 is 00:30 on March 2 in Berlin: the local date is reviewed
    clock = datetime(2025, 3, 1, 23, 30, tzinfo=ZoneInfo("UTC"))
    scheduler = DailyScheduler(Runner(), time(0, 15), zone, clock=lambda: clock)  # type: ignore[arg-type]
    assert scheduler.next_run(clock) == datetime(2025, 3, 3, 0, 15, tzinfo=ZoneInfo(zone))
    await scheduler.run()
    assert done == [D("2025-03-02")]


def test_the_outbox_passes_over_stored_events_that_publish_nothing_by_their_topic() -> None:
    app = Application()
    account = CreditAccount("C1")
    account.set_limit("EUR", Decimal("100.00"), "carol", expires_on=D("2025-03-10"),
                      review_on=D("2025-03-05"))
    account.check("O1", Decimal("10.00"), "EUR", D("2025-03-01"))
    hold = account.place_manual_hold("alice", "call first")
    account.release_hold(hold["hold_id"], "bob", "paid")
    account.review(D("2025-03-20"), default_rules())
    events = account.collect_events()
    translate_stored = stored_translator(app)
    kinds = set()
    for position, event in enumerate(events, 1):
        stored = app.mapper.to_stored_event(event)
        notification = Notification(originator_id=stored.originator_id,
                                    originator_version=stored.originator_version, topic=stored.topic,
                                    state=stored.state, id=position)
        assert translate_stored(notification) == translate(event)
        kinds.add((type(event).__name__, bool(translate(event))))
    assert {kind for kind, publishes in kinds if publishes} <= PUBLISHING
    assert {"CreditChecked", "HoldPlaced", "HoldReleased", "LimitSet", "LimitExpired"} <= {
        kind for kind, _ in kinds}
