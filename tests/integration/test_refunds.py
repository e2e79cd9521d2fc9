"""Refunds through Kafka, on SQLite and PostgreSQL (issue 18, its first part).

By hand: customer F has invoice F-1 of 100.00 and pays 130.00 (P1, 12 March) and 50.00 (P2,
14 March): F-1 is paid, 80.00 unapplied (30.00 of P1, 50.00 of P2).

- R1 refunds 40.00 of the oldest cash on 20 March: P1's 30.00, then 10.00 of P2; 40.00
  unapplied.
- R2 asks for 45.00 of P2, which has 40.00 left: refused, dead-lettered, nothing changed.
- March's statement: 100.00 invoiced, 130.00 and 50.00 paid, 40.00 refunded: closing -40.00,
  the refund a debit line; `ledger.refund_issued` and the unapplied cash's change published.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.broker import EmbeddedBroker
from tests.integration.feed_harness import dead_letter_reasons, published_once
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    cloud_event,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
    read_topic,
)

WAIT = 30.0


def refunded(refund_id: str, amount: str, day: str, **extra: Any) -> dict[str, Any]:
    return cloud_event("payment.refunded", {"refund_id": refund_id, "customer_id": "F", "currency": "EUR",
                                            "amount": amount, "refund_date": day, **extra},
                       event_id=f"ref-{refund_id}")


async def balance(ledger: InProcessLedger) -> dict[str, str] | None:
    found = await ledger.balances("F", as_of="2024-03-31")
    return None if found is None else found.get("EUR")


async def test_a_refund_within_the_unapplied_cash_and_one_beyond_it(broker: EmbeddedBroker, database_url: str
                                                                    ) -> None:
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger, \
            Publisher(broker.bootstrap) as publisher:
        await publisher.send(invoice_issued("F", "F-1", "100.00", issue="2024-03-01", due="2024-03-31"))
        await poll(lambda: balance(ledger), lambda b: b is not None, timeout=WAIT, what="F-1 booked")
        await publisher.send_all([payment_received("F", "P1", "130.00", received="2024-03-12"),
                                  payment_received("F", "P2", "50.00", received="2024-03-14")])
        found = await poll(lambda: balance(ledger),
                           lambda b: b is not None and b["unapplied_cash"] == "80.00",
                           timeout=WAIT, what="80.00 unapplied")
        assert found is not None and found["open_amount"] == "0.00"

        await publisher.send(refunded("R1", "40.00", "2024-03-20"))
        await poll(lambda: balance(ledger), lambda b: b is not None and b["unapplied_cash"] == "40.00",
                   timeout=WAIT, what="R1 refunded")
        await publisher.send(refunded("R2", "45.00", "2024-03-21", payment_id="P2"))
        (reason,) = await dead_letter_reasons(broker.bootstrap, 1, WAIT)
        assert reason == "amount: refund R2 of 45.00 EUR is more than payment P2's unapplied cash (40.00 EUR)"
        assert (await balance(ledger) or {})["unapplied_cash"] == "40.00"  # nothing changed

        statement = await ledger.json("/customers/F/statement", **{"from": "2024-03-01", "to": "2024-03-31"})
        (eur,) = statement["currencies"]
        assert [(x["date"], x["type"], x["reference"], x["debit"], x["credit"], x["balance"])
                for x in eur["lines"]] == [
            ("2024-03-01", "invoice", "F-1", "100.00", "0.00", "100.00"),
            ("2024-03-12", "payment", "P1", "0.00", "130.00", "-30.00"),
            ("2024-03-14", "payment", "P2", "0.00", "50.00", "-80.00"),
            ("2024-03-20", "refund", "R1", "40.00", "0.00", "-40.00"),
        ]
        assert (eur["closing_balance"], eur["unapplied_cash"]) == ("-40.00", "40.00")

        records = await read_topic(broker.bootstrap, "ar.ledger.events", timeout=WAIT, until=lambda rs: any(
            orjson.loads(r.value)["type"] == "ledger.refund_issued" for r in rs))
    published = published_once(records)
    (issued,) = [m["data"] for m in published if m["type"] == "ledger.refund_issued"]
    assert (issued["refund_id"], issued["amount"], issued["payment_id"], issued["taken"]) == (
        "R1", "40.00", None, [{"credit": "payment:P1", "amount": "30.00"},
                              {"credit": "payment:P2", "amount": "10.00"}])
    changes = [(m["data"]["change"], m["data"]["cause"]) for m in published
               if m["type"] == "ledger.unapplied_cash_changed"]
    assert ("-40.00", "PaymentRefunded") in changes
