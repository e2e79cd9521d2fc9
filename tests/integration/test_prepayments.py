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


async def eur(ledger: InProcessLedger) -> dict[str, str] | None:
    found = await ledger.balances("G")
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
