"""Unit tests of the dunning service's own parts: policy book, run registry, decoding, scheduler."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.credit.application import CreditApplication
from services.dunning.application import DunningApplication
from services.dunning.domain import DunningAccount, default_policy
from services.dunning.domain.registry import PolicyBook, resolve
from shared.erp_events import InvalidMessage
from shared.ledger_feed import decode, read_fact
from shared.scheduling import DailyScheduler
from tests.unit.ledger_feed_customer import sent

D = date.fromisoformat


def test_the_policy_book_numbers_versions_and_ignores_unchanged_content() -> None:
    book = PolicyBook()
    assert [(p.name, p.version) for p in book.all()] == [("default", 1)]
    strict = default_policy().model_copy(update={"name": "strict", "version": 9})
    assert book.store(strict).version == 1  # the book numbers the versions, not the caller
    assert book.store(strict).version == 1  # the same content again: no new version
    assert book.store(strict.model_copy(update={"promise_grace_days": 5})).version == 2
    revised_default = default_policy().model_copy(update={"description": "ours"})
    assert book.store(revised_default).version == 2  # the shipped default was version 1
    assert [(p.name, p.version) for p in book.all()] == [("default", 2), ("strict", 2)]
    assert resolve(book, "strict").promise_grace_days == 5
    assert resolve(book, "no-such-policy").name == "default"
    rebuilt = None
    for stored in book.collect_events():
        rebuilt = stored.mutate(rebuilt)
    assert isinstance(rebuilt, PolicyBook) and rebuilt.policies == book.policies


def test_a_profile_message_counts_once_whichever_topic_brings_it() -> None:
    account = DunningAccount("C1")
    first = decode(sent("customer.upserted", {"customer_id": "C1", "name": "One", "do_not_dun": True},
                        "m1"))
    second = decode(sent("customer.upserted", {"customer_id": "C1", "name": "One", "do_not_dun": False},
                         "m2"))
    assert account.observe(first)
    assert account.observe(second)
    # the ledger's ledger.customer_updated for m1 arrives late: it must not bring m1 back
    late = {**first.data, "origin": {"source": "erp/x", "id": "m1", "type": "customer.upserted"}}
    assert not account.observe(read_fact("ledger.customer_updated", late, "ledger:x:3:0"))
    assert account.do_not_dun is False


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{", "not JSON"),
    (sent("ledger.invoice_opened", {"customer_id": "C1", "invoice_id": "I1"}), "data.currency"),
    (sent("ledger.invoice_opened", {"customer_id": "C1", "invoice_id": "I1", "currency": "EUR",
                                    "amount": 12.5, "issue_date": "2025-01-01", "due_date": "2025-01-31"}),
     "data.amount"),
    (sent("ledger.payment_applied", {"customer_id": "C1", "invoices": [{"invoice_id": "I1"}]}),
     "data.invoices.0.open_amount"),
    (sent("invoice.issued", {"customer_id": "C1"}), "unknown event type"),
    (sent("customer.upserted", {"customer_id": "C1"}), "data.name"),
])
def test_undecodable_messages_name_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason.replace(".", r"\.")):
        decode(raw, key=b"C1")


def test_ledger_types_this_version_does_not_read_are_skipped_not_dead_lettered() -> None:
    fact = decode(sent("ledger.something_new", {"customer_id": "C1"}), key=b"C1")
    assert (fact.known, fact.customer_id) == (False, "C1")
    # a type the service does not read is skipped unread, however its data looks
    unread = sent("ledger.invoice_settled", {"customer_id": "C1", "invoice_id": "", "open_amount": 5})
    fact = decode(unread, key=b"C1", reads=DunningApplication.reads)
    assert (fact.known, fact.customer_id) == (False, "C1")
    fact = decode(unread, key=b"C1", reads=CreditApplication.reads)
    assert (fact.known, fact.customer_id) == (False, "C1")
    with pytest.raises(InvalidMessage, match=r"data\.invoice_id"):
        decode(unread, key=b"C1")  # (read: checked)
    with pytest.raises(InvalidMessage, match="key"):
        decode(sent("ledger.invoice_settled", {"customer_id": "C1", "invoice_id": "I1",
                                               "open_amount": "0.00", "status": "paid"}), key=b"C2")


def test_a_kafka_message_needs_its_key_and_the_type_of_its_topic() -> None:
    profile = sent("customer.upserted", {"customer_id": "C1", "name": "One"})
    with pytest.raises(InvalidMessage, match=r"^key: the message has no key"):
        decode(profile, key=b"", topic="ar.customers")
    with pytest.raises(InvalidMessage, match=r"^type: 'customer\.upserted' is not carried"):
        decode(profile, key=b"C1", topic="ar.ledger.events")
    settled = sent("ledger.invoice_settled", {"customer_id": "C1", "invoice_id": "I1",
                                              "open_amount": "0.00", "status": "paid"})
    with pytest.raises(InvalidMessage, match=r"^type: 'ledger\.invoice_settled' is not carried"):
        decode(settled, key=b"C1", topic="ar.customers")
    assert decode(profile, key=b"C1", topic="ar.customers").customer_id == "C1"


def test_the_scheduler_runs_at_the_local_time_for_the_local_date() -> None:
    scheduler = DailyScheduler(runner=None, run_at=time(6, 30), zone="Europe/Berlin")  # type: ignore[arg-type]
    utc = ZoneInfo("UTC")
    # 05:00 UTC is 06:00 in Berlin in winter: today's run is still to come, at 05:30 UTC
    due = scheduler.next_run(datetime(2025, 1, 15, 5, 0, tzinfo=utc))
    assert due.astimezone(utc) == datetime(2025, 1, 15, 5, 30, tzinfo=utc)
    # 23:30 UTC on Jan 15 is already Jan 16 in Berlin: the next run is Jan 16's
    due = scheduler.next_run(datetime(2025, 1, 15, 23, 30, tzinfo=utc))
    assert due.date() == date(2025, 1, 16) and due.astimezone(utc).hour == 5
    # summer time: 06:30 in Berlin is 04:30 UTC
    due = scheduler.next_run(datetime(2025, 7, 1, 12, 0, tzinfo=utc))
    assert due.astimezone(utc) == datetime(2025, 7, 2, 4, 30, tzinfo=utc)


async def test_the_scheduler_catches_up_today_and_passes_the_date() -> None:
    class Runner:
        def __init__(self) -> None:
            self.dates: list[date] = []

        async def run(self, as_of: date) -> dict[str, Any]:
            self.dates.append(as_of)
            await scheduler.stop()
            return {"notices": []}

    runner = Runner()
    clock = datetime(2025, 1, 15, 23, 30, tzinfo=ZoneInfo("UTC"))  # Jan 16, 00:30 in Berlin
    scheduler = DailyScheduler(runner, time(0, 15), "Europe/Berlin", clock=lambda: clock)  # type: ignore[arg-type]
    await scheduler.run()
    assert runner.dates == [date(2025, 1, 16)]
