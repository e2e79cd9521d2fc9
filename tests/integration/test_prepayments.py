"""A tagged prepayment through Kafka, on SQLite and PostgreSQL (issue 18, its second part).

By hand: customer G owes G-OLD 200.00 (due 10 March). The ERP asks for 300.00 in advance for
order O1 (RQ1) and G pays 300.00 tagged with RQ1 (P1, 5 March): the oldest-due rule would
spend it on G-OLD, but it is held for the order: G-OLD still 200.00 open, 300.00 unapplied.
The order's invoice G-ORD of 250.00 (12 March) takes 250.00 of it first; the 50.00 left is
ordinary cash and goes to G-OLD: 150.00 open, nothing unapplied.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.broker import EmbeddedBroker
from tests.integration.feed_harness import published_once
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    cloud_event,
    invoice_issued,
    ledger_settings,
    poll,
    read_topic,
)

WAIT = 30.0


async def eur(ledger: InProcessLedger, customer: str = "G") -> dict[str, str] | None:
    found = await ledger.balances(customer)
    return None if found is None else found.get("EUR")


async def invoice_open(ledger: InProcessLedger, invoice_id: str) -> str | None:
    found = await ledger.invoice(invoice_id)
    return None if found is None else str(found["open_amount"])


async def test_a_tagged_prepayment_waits_for_its_orders_invoice(broker: EmbeddedBroker,
                                                                database_url: str) -> None:
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger, \
            Publisher(broker.bootstrap) as publisher:
        await publisher.send(invoice_issued("G", "G-OLD", "200.00", issue="2024-02-09", due="2024-03-10"))
        await publisher.send(cloud_event("prepayment.requested", {
            "request_id": "RQ1", "customer_id": "G", "currency": "EUR", "amount": "300.00",
            "requested_date": "2024-03-01", "due_date": "2024-03-08", "order_id": "O1"}, event_id="rq-1"))
        await poll(lambda: eur(ledger), lambda b: b is not None, timeout=WAIT, what="G-OLD booked")
        await publisher.send(cloud_event("payment.received", {
            "payment_id": "P1", "customer_id": "G", "currency": "EUR", "amount": "300.00",
            "received_date": "2024-03-05", "prepayment_request_id": "RQ1"}, event_id="pay-P1"))
        held = await poll(lambda: eur(ledger), lambda b: b is not None and b["unapplied_cash"] == "300.00",
                          timeout=WAIT, what="P1 held for RQ1")
        assert held is not None and held["open_amount"] == "200.00"  # not spent on G-OLD

        order: dict[str, Any] = invoice_issued("G", "G-ORD", "250.00", issue="2024-03-12", due="2024-04-11")
        order["data"]["attributes"] = {"order_id": "O1"}
        await publisher.send(order)
        settled = await poll(lambda: eur(ledger), lambda b: b is not None and b["unapplied_cash"] == "0.00",
                             timeout=WAIT, what="P1 applied")
        assert settled is not None and settled["open_amount"] == "150.00"
        opened = (await invoice_open(ledger, "G-ORD"), await invoice_open(ledger, "G-OLD"))
        assert opened == ("0.00", "150.00")

        records = await read_topic(broker.bootstrap, "ar.ledger.events", timeout=WAIT, until=lambda rs: any(
            orjson.loads(r.value)["type"] == "ledger.prepayment_applied" for r in rs))
    published = published_once(records)
    by_type = {m["type"]: m["data"] for m in published}
    requested = by_type["ledger.prepayment_requested"]
    assert (requested["request_id"], requested["order_id"], requested["amount"]) == ("RQ1", "O1", "300.00")
    received = by_type["ledger.prepayment_received"]
    assert (received["request_id"], received["payment_id"], received["amount"]) == ("RQ1", "P1", "300.00")
    applied = by_type["ledger.prepayment_applied"]["applied"]
    assert [(a["credit"], a["invoice_id"], a["amount"]) for a in applied] == [
        ("payment:P1", "G-ORD", "250.00")]


async def test_a_request_never_paid_shows_its_age_and_stale_cash_its_days(broker: EmbeddedBroker,
                                                                          database_url: str) -> None:
    """By hand, customer K on 31 March: RQ-K1 (500.00, asked 10 January, due the 20th) never
    paid is 81 days old and 71 past due; RQ-K2 (150.00 for order OK2, asked 1 March) has PK2's
    150.00 of 4 March waiting for the order: 30 days old, ``received``. The unapplied cash by
    30-day buckets: PK2's 150.00 (27 days) in 0-30, PK's 80.00 paid on account on 20 February
    (40 days) in 30+."""
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger, \
            Publisher(broker.bootstrap) as publisher:
        def asked(request_id: str, amount: str, day: str, due: str, **extra: str) -> dict[str, Any]:
            return cloud_event("prepayment.requested", {
                "request_id": request_id, "customer_id": "K", "currency": "EUR", "amount": amount,
                "requested_date": day, "due_date": due, **extra}, event_id=f"ask-{request_id}")

        await publisher.send_all([
            asked("RQ-K1", "500.00", "2024-01-10", "2024-01-20", order_id="OK1"),
            asked("RQ-K2", "150.00", "2024-03-01", "2024-03-08", order_id="OK2"),
            cloud_event("payment.received", {"payment_id": "PK", "customer_id": "K", "currency": "EUR",
                                             "amount": "80.00", "received_date": "2024-02-20"},
                        event_id="pay-PK"),
            cloud_event("payment.received", {"payment_id": "PK2", "customer_id": "K", "currency": "EUR",
                                             "amount": "150.00", "received_date": "2024-03-04",
                                             "prepayment_request_id": "RQ-K2"}, event_id="pay-PK2"),
        ])

        async def requests() -> dict[str, Any]:
            body = await ledger.json("/prepayments", as_of="2024-03-31", customer_id="K")
            return {p["request_id"]: p for p in body["prepayments"]}

        found = await poll(requests, lambda r: r.get("RQ-K2", {}).get("received") == "150.00",
                           timeout=WAIT, what="PK2 received for RQ-K2")
        never_paid, waiting = found["RQ-K1"], found["RQ-K2"]
        assert (never_paid["status"], never_paid["received"], never_paid["age_days"],
                never_paid["days_past_due"]) == ("requested", "0.00", 81, 71)
        assert (waiting["status"], waiting["held"], waiting["age_days"]) == ("received", "150.00", 30)
        old = await ledger.json("/prepayments", as_of="2024-03-31", older_than_days=60)
        assert [p["request_id"] for p in old["prepayments"]] == ["RQ-K1"]

        aging = await ledger.json("/aging/unapplied", as_of="2024-03-31", buckets="30", customer_id="K")
        (row,) = aging["rows"]
        assert (row["0-30"], row["30+"], row["total"], row["from_prepayments"]) == (
            "150.00", "80.00", "230.00", "150.00")
        # and the balance sees no receivable in a request: only the cash
        balance = await eur(ledger, "K")
        assert balance is not None
        assert (balance["open_amount"], balance["unapplied_cash"]) == ("0.00", "230.00")
