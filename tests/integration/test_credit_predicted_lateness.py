"""The credit review scores the ledger's predicted lateness (issue 20), through the real broker
and the real ledger over HTTP, on SQLite and PostgreSQL; and, the ledger gone, the review goes
on and says why.

By hand, reviewed on 31 March 2025 (no model trained: the ledger's stated baseline answers):
PL-1 (1,000.00, due 31 January) was paid 30 days late on 2 March; PL-2 (2,000.00, due 16
March) is open, 15 days past due. The baseline predicts PL-2 paid at the customer's median,
30 days late (later than the 15 so far): ``predicted_lateness`` 10 x 30/60 = 5.00. The
behaviour keeps 90% of its weights: weighted days late (30 + 15)/2 = 22.5 of 60 (0.375 x 31.5)
11.81, late share 2 of 2 22.50, oldest open 15 days of 90 (0.1667 x 22.5) 3.75: 43.06, grade C.
Without the prediction the same day scores 13.13 + 25.00 + 4.17 = 42.30.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import InProcessCredit, credit_settings_for, write_tokens
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
)

WAIT = 30.0


def contributions(assessment: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["contribution"] for f in assessment["factors"] if f["contribution"] != "0.00"}


async def test_the_review_scores_the_predicted_lateness_and_goes_on_without_the_ledger(
        credit_broker: EmbeddedBroker, database_url: str, tmp_path: Path) -> None:
    broker = credit_broker
    ledger = InProcessLedger(ledger_settings(broker.bootstrap, database_url))
    settings = credit_settings_for(broker.bootstrap, database_url, write_tokens(tmp_path),
                                   ledger_url=f"http://127.0.0.1:{ledger.port}")
    async with InProcessCredit(settings) as credit, Publisher(broker.bootstrap) as publisher:
        async with ledger:
            await publisher.send_all([
                invoice_issued("PL", "PL-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
                payment_received("PL", "PL-P", "1000.00", received="2025-03-02",
                                 allocations=[("PL-1", "1000.00")]),
                invoice_issued("PL", "PL-2", "2000.00", issue="2025-02-14", due="2025-03-16"),
            ])
            await credit.wait_view("PL", lambda v: v["exposure"] == "2000.00", "PL-1 paid, PL-2 open")
            outlook = await poll(
                lambda: ledger.json("/predictions/customers", as_of="2025-03-31", customer_id="PL"),
                lambda o: [c["predicted_days_late"] for c in o["customers"]] == [30],
                timeout=WAIT, what="the ledger's outlook of PL")
            assert outlook["model_version"] == "baseline-customer-median"
            reviewed = await credit.post("/reviews", {"as_of": "2025-03-31"}, as_="writer")
        assert reviewed.status_code == 200, reviewed.text
        review = reviewed.json()
        assert review["predictions"] == {"used": True, "model_version": "baseline-customer-median",
                                         "asked": 1, "recorded": 1}
        (change,) = review["grade_changes"]
        assert (change["customer_id"], change["score"], change["grade"]) == ("PL", "43.06", "C")
        assert contributions(change) == {"weighted_days_late": "11.81", "late_share": "22.50",
                                         "max_days_past_due": "3.75", "predicted_lateness": "5.00"}
        view = await credit.view("PL")
        assert view is not None and view["prediction"]["days_late"] == 30

        # the ledger is gone: the next review goes on, says why, and the day-old prediction counts
        later = await credit.post("/reviews", {"as_of": "2025-04-01"}, as_="writer")
        assert later.status_code == 200, later.text
        assert later.json()["predictions"]["used"] is False
        assert "could not be asked" in later.json()["predictions"]["reason"]
        scored = (await credit.get("/customers/PL/credit", as_of="2025-04-01")).json()["risk_as_of"]
        assert "predicted_lateness" in contributions(scored)
        # two weeks on, nothing predicted since: the behaviour alone, as before predictions
        stale = (await credit.get("/customers/PL/credit", as_of="2025-04-15")).json()["risk_as_of"]
        assert "predicted_lateness" not in [f["name"] for f in stale["factors"]]
        plain = (await credit.get("/customers/PL/credit", as_of="2025-03-31")).json()["risk_as_of"]
        assert plain["score"] == "43.06"  # (the day's prediction is recorded: the same day scores the same)
