"""The dunning worklist ordered by the ledger's expected loss (issue 20), through the real broker
and the real ledger over HTTP, on SQLite and PostgreSQL; and, the ledger gone, the worklist as
before, saying why.

On 1 April 2025 (no model trained: the ledger's stated baseline answers), by hand:
- X owes 5,000.00 due 25 March (7 days overdue) and paid its one earlier invoice 2 days late:
  paid 7 days late at the least, its median 2: not more than 30 days late, no loss expected;
- Y owes 1,000.00 due 15 February: 45 days overdue, more than 30 days late for certain: an
  expected loss of all of it.
By amount at risk (nothing dunned yet: x1) X comes first; by expected loss Y does.
"""

from __future__ import annotations

from typing import Any

from shared.broker import EmbeddedBroker
from tests.integration.dunning_harness import InProcessDunning, dunning_settings_for
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
)

WAIT = 30.0
AS_OF = "2025-04-01"
EXPECTED = [("Y", "1000.00", "1000.00", 45), ("X", "5000.00", "0.00", 7)]  # (customer, at risk, loss, days)


def rows(worklist: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["customer_id"], r["amount_at_risk"], r.get("expected_loss"), r.get("predicted_days_late"))
            for r in worklist["customers"]]


async def test_the_worklist_orders_by_expected_loss_and_falls_back_without_the_ledger(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    ledger = InProcessLedger(ledger_settings(dunning_broker.bootstrap, database_url))
    settings = dunning_settings_for(dunning_broker.bootstrap, database_url,
                                    ledger_url=f"http://127.0.0.1:{ledger.port}")
    async with InProcessDunning(settings) as dunning, Publisher(dunning_broker.bootstrap) as publisher:
        async with ledger:
            await publisher.send_all([
                invoice_issued("X", "X-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
                payment_received("X", "XP-1", "1000.00", received="2025-02-02",
                                 allocations=[("X-1", "1000.00")]),
                invoice_issued("X", "X-2", "5000.00", issue="2025-02-23", due="2025-03-25"),
                invoice_issued("Y", "Y-1", "1000.00", issue="2025-01-16", due="2025-02-15"),
            ])
            # (dunning and the ledger's read models each catch up in their own time)
            predicted = await poll(lambda: dunning.json("/worklist", as_of=AS_OF),
                                   lambda w: rows(w) == EXPECTED,
                                   timeout=WAIT, what="the worklist by expected loss")
        without = await dunning.json("/worklist", as_of=AS_OF)
    assert predicted["predictions"] == {"used": True, "model_version": "baseline-customer-median"}
    assert without["predictions"]["used"] is False
    assert "could not be asked" in without["predictions"]["reason"]
    assert rows(without) == [("X", "5000.00", None, None), ("Y", "1000.00", None, None)]
