"""Early warnings and the watchlist through Kafka and REST, with the real ledger, dunning and
credit, on SQLite and PostgreSQL (issue 19).

By hand, in 2025, under the default rules (no warning holds):

- LU, limit 1,000.00, 950.00 open: the review of 1 March finds 95% of the limit used
  (``limit_utilisation``, medium). Paid down to 450.00, the review of 15 March clears it.
- DG: a bureau rates it BB (probability of default 0.02) in February and B (0.08) in March:
  the review of 15 March raises ``rating_downgrade`` (medium).
- LP: three invoices due 1, 5 and 10 February, paid 10, 6 and 20 days late (by 2 March):
  ``late_payments`` (medium) when the third is paid.
- BP: 500.00 due 1 February; on 25 February it promises to pay by 10 March (dunning pauses to
  13 March); nothing comes, dunning's run of 14 March breaks the promise
  (``dunning.resumed``, ``promise_broken``) and credit raises ``broken_promise`` (high), dated
  14 March. Its invoice, past due since 1 February, also grades worse on 15 March than on 1
  March (``risk_grade_worse``).

The watchlist puts BP first (high), then the medium ones by their largest exposure: LP (nothing
open: 0.00) last. Acknowledging needs ``credit:write``. Stopped, the read models rebuild from
the event store to the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from services.credit.replay import replay_credit
from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import CREDIT_TOPIC, InProcessCredit, credit_settings_for, write_tokens
from tests.integration.dunning_harness import InProcessDunning, dunning_settings_for, profile
from tests.integration.feed_harness import published_once
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


def paid(customer: str, payment_id: str, amount: str, day: str, invoice: str) -> dict[str, Any]:
    event = payment_received(customer, payment_id, amount, received=day)
    event["data"]["allocations"] = [{"invoice_id": invoice, "amount": amount}]
    return event


def rated(message_id: str, grade: str, pd: str, day: str) -> dict[str, Any]:
    event = cloud_event("rating.reported", {"customer_id": "DG", "provider": "bureau", "score": "60",
                                            "grade": grade, "probability_of_default": pd, "report_date": day},
                        event_id=message_id)
    event["source"] = "bureau/feed"
    return event


async def test_signals_raise_warnings_the_watchlist_orders(credit_broker: EmbeddedBroker, database_url: str,
                                                           tmp_path: Path) -> None:
    settings = credit_settings_for(credit_broker.bootstrap, database_url, write_tokens(tmp_path))
    async with InProcessLedger(ledger_settings(credit_broker.bootstrap, database_url)), \
            InProcessDunning(dunning_settings_for(credit_broker.bootstrap, database_url)) as dunning, \
            InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        await publisher.send_all([
            profile("LU", event_id="p-LU", credit_limit={"currency": "EUR", "amount": "1000.00"}),
            invoice_issued("LU", "LU-1", "950.00", issue="2025-02-01", due="2025-03-31"),
            invoice_issued("DG", "DG-1", "100.00", issue="2025-02-01", due="2025-04-30"),
            rated("dg-1", "BB", "0.02", "2025-02-01"),
            invoice_issued("LP", "LP-1", "100.00", issue="2025-01-01", due="2025-02-01"),
            invoice_issued("LP", "LP-2", "100.00", issue="2025-01-05", due="2025-02-05"),
            invoice_issued("LP", "LP-3", "100.00", issue="2025-01-10", due="2025-02-10"),
            invoice_issued("BP", "BP-1", "500.00", issue="2025-01-02", due="2025-02-01"),
        ])
        for customer, exposure in (("LU", "950.00"), ("DG", "100.00"), ("LP", "300.00"), ("BP", "500.00")):
            await credit.wait_view(customer, lambda v, e=exposure: v["exposure"] == e,
                                   f"{customer}'s invoices")
        await publisher.send_all([paid("LP", "LP-P1", "100.00", "2025-02-11", "LP-1"),
                                  paid("LP", "LP-P2", "100.00", "2025-02-11", "LP-2"),
                                  paid("LP", "LP-P3", "100.00", "2025-03-02", "LP-3")])

        async def warnings(**params: str) -> list[dict[str, Any]]:
            response = await credit.get("/warnings", **params)
            assert response.status_code == 200, response.text
            return list(response.json()["warnings"])

        late = await poll(lambda: warnings(customer_id="LP"), lambda ws: len(ws) == 1, timeout=WAIT,
                          what="LP's late payments")
        first = late[0]
        assert (first["signal"], first["severity"], first["raised_on"], first["evidence"]["count"]) == (
            "late_payments", "medium", "2025-03-02", 3)

        await credit.review("2025-03-01")  # (its warnings are projected after it answers: poll)
        (used,) = await poll(lambda: warnings(customer_id="LU"), lambda ws: len(ws) == 1, timeout=WAIT,
                             what="LU's limit used")
        assert (used["signal"], used["evidence"]["currencies"][0]["percent"]) == (
            "limit_utilisation", "95.00")

        # BP promises on 25 February, pays nothing: dunning's run of 14 March breaks the promise
        made = await dunning.post("/customers/BP/promises", {
            "promised_date": "2025-03-10", "amount": "500.00", "made_on": "2025-02-25"})
        assert made.status_code == 201, made.text
        assert (await dunning.post("/runs", {"as_of": "2025-03-14"})).status_code == 200
        broken = await poll(lambda: warnings(customer_id="BP"), lambda ws: len(ws) == 1, timeout=WAIT,
                            what="BP's broken promise")
        assert (broken[0]["signal"], broken[0]["severity"], broken[0]["raised_on"]) == (
            "broken_promise", "high", "2025-03-14")
        assert broken[0]["evidence"]["broken"][0]["kind"] == "promise"

        await publisher.send(rated("dg-2", "B", "0.08", "2025-03-10"))
        await publisher.send(paid("LU", "LU-P", "500.00", "2025-03-12", "LU-1"))
        await credit.wait_view("LU", lambda v: v["exposure"] == "450.00", "LU paid down")
        await poll(lambda: credit.get("/customers/DG/credit"),
                   lambda r: [x["grade"] for x in r.json()["ratings"]] == ["B"], timeout=WAIT, what="DG's B")
        await credit.review("2025-03-15")
        (downgrade,) = await poll(lambda: warnings(customer_id="DG"), lambda ws: len(ws) == 1, timeout=WAIT,
                                  what="DG's downgrade")
        assert downgrade["signal"] == "rating_downgrade"
        await poll(lambda: warnings(customer_id="LU"), lambda ws: [w["status"] for w in ws] == ["cleared"],
                   timeout=WAIT, what="LU's warning cleared")

        watch = (await credit.get("/watchlist")).json()["customers"]
        assert [(c["customer_id"], c["worst_severity"]) for c in watch] == [
            ("BP", "high"), ("DG", "medium"), ("LP", "medium")]

        warning_id = downgrade["warning_id"]
        path = f"/warnings/{warning_id}/acknowledge"
        refused = await credit.post(path, {"note": "called them"}, as_="reader")
        assert refused.status_code == 403
        done = await credit.post(path, {"note": "called them", "on": "2025-03-16"}, as_="writer")
        assert done.status_code == 200, done.text
        assert done.json()["acknowledgements"] == [
            {"note": "called them", "by": "writer", "acknowledged_on": "2025-03-16"}]

        records = await read_topic(credit_broker.bootstrap, CREDIT_TOPIC, timeout=WAIT, until=lambda rs: any(
            orjson.loads(r.value)["type"] == "credit.warning_acknowledged" for r in rs))
    kinds = [(m["type"], m["data"]["customer_id"], m["data"].get("signal")) for m in published_once(records)
             if "warning" in m["type"]]
    assert sorted(kinds, key=str) == sorted([
        ("credit.warning_raised", "LP", "late_payments"),
        ("credit.warning_raised", "LU", "limit_utilisation"),
        ("credit.warning_raised", "BP", "broken_promise"),
        ("credit.warning_raised", "DG", "rating_downgrade"),
        ("credit.warning_cleared", "LU", "limit_utilisation"), ("credit.warning_acknowledged", "DG", None),
        # BP's 500.00, past due since 1 February, graded worse on 15 March than on 1 March
        ("credit.warning_raised", "BP", "risk_grade_worse")], key=str), kinds
    # the service is stopped: a rebuild of the read models from the event store is identical
    assert replay_credit(settings, verify=True) == 0
