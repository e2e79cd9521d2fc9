"""Securities through Kafka and REST, on SQLite and PostgreSQL (issue 19, its first part).

By hand, in 2025, under the default rules:

- G, limit 10,000.00, 9,000.00 open: an order of 2,000.00 on 1 March is over the limit
  (review). A bank guarantee of 5,000.00 for March secures it: the same order on 10 March is
  approved with 5,000.00 secured and 6,000.00 available. The review of 2 March announces the
  guarantee's end (``credit.security_expiring``, 29 days left). On 1 April it no longer
  counts: an order is over again, and that day's review holds G (11,000.00 unsecured).
- I, limit 5,000.00, 4,000.00 open, insured 75% up to 6,000.00: an order of 2,000.00 makes
  6,000.00 exposed, 4,500.00 insured: approved, 5,500.00 available.
- P, limit 1,000.00, 900.00 open, a power of attorney: an order of 200.00 is over (review),
  nothing secured.
- A draw and a release by the security's id alone (the service finds the customer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import (
    CREDIT_TOPIC,
    WAIT,
    InProcessCredit,
    credit_settings_for,
    write_tokens,
)
from tests.integration.dunning_harness import profile
from tests.integration.feed_harness import published_once
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    invoice_issued,
    ledger_settings,
    read_topic,
)


def limit(amount: str) -> dict[str, str]:
    return {"currency": "EUR", "amount": amount}


def answer(check: dict[str, Any]) -> tuple[Any, ...]:
    return check["decision"], check["reasons"], check["secured_amount"], check["available_credit"]


async def test_securities_in_checks_views_and_reviews(credit_broker: EmbeddedBroker, database_url: str,
                                                      tmp_path: Path) -> None:
    settings = credit_settings_for(credit_broker.bootstrap, database_url, write_tokens(tmp_path))
    async with InProcessLedger(ledger_settings(credit_broker.bootstrap, database_url)), \
            InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        await publisher.send_all([
            profile("G", event_id="p-G", credit_limit=limit("10000.00")),
            profile("I", event_id="p-I", credit_limit=limit("5000.00")),
            profile("P", event_id="p-P", credit_limit=limit("1000.00")),
            invoice_issued("G", "G-1", "9000.00", issue="2025-02-01", due="2025-04-30"),
            invoice_issued("I", "I-1", "4000.00", issue="2025-02-01", due="2025-04-30"),
            invoice_issued("P", "P-1", "900.00", issue="2025-02-01", due="2025-04-30"),
        ])
        for customer, exposure in (("G", "9000.00"), ("I", "4000.00"), ("P", "900.00")):
            await credit.wait_view(customer, lambda v, e=exposure: v["exposure"] == e and bool(v["limit"]),
                                   f"{customer}'s invoice and limit")

        async def register(customer: str, body: dict[str, Any], as_: str = "writer") -> Any:
            return await credit.post(f"/customers/{customer}/securities", body, as_=as_)

        guarantee = {"security_id": "G-BG1", "kind": "bank_guarantee", "currency": "EUR", "amount": "5000.00",
                     "valid_from": "2025-03-01", "valid_until": "2025-03-31", "issuer": "Hausbank",
                     "on": "2025-03-01"}
        assert answer(await credit.check("G", "O1", "2000.00", on="2025-03-01")) == (
            "review", ["limit_exceeded"], "0.00", "1000.00")
        assert (await register("G", guarantee, as_="reader")).status_code == 403
        created = await register("G", guarantee)
        assert created.status_code == 201, created.text
        assert (created.json()["customer_id"], created.json()["kind"], created.json()["status"]) == (
            "G", "bank_guarantee", "active")  # (on the day it was registered)
        conflicting = await register("G", {**guarantee, "amount": "6000.00"})
        assert conflicting.status_code == 409
        invalid = await register("G", {**guarantee, "security_id": "G-X", "kind": "credit_insurance"})
        assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "body.coverage_percent"
        assert answer(await credit.check("G", "O2", "2000.00", on="2025-03-10")) == (
            "approve", [], "5000.00", "6000.00")

        insured = await register("I", {"security_id": "I-CI1", "kind": "credit_insurance", "currency": "EUR",
                                       "amount": "6000.00", "coverage_percent": "75",
                                       "valid_from": "2025-01-01", "on": "2025-03-01"})
        assert insured.status_code == 201, insured.text
        assert answer(await credit.check("I", "O1", "2000.00", on="2025-03-05")) == (
            "approve", [], "4500.00", "5500.00")
        attorney = await register("P", {"security_id": "P-PA1", "kind": "power_of_attorney",
                                        "on": "2025-03-01", "valid_from": "2025-01-01",
                                        "note": "signed by the owner"})
        assert attorney.status_code == 201 and attorney.json()["status"] == "document"
        assert answer(await credit.check("P", "O1", "200.00", on="2025-03-05")) == (
            "review", ["limit_exceeded"], "0.00", "100.00")

        march = await credit.review("2025-03-02")
        assert march["holds_placed"] == []
        view = (await credit.get("/customers/G/credit", as_of="2025-03-15")).json()
        assert (view["exposure"], view["secured_amount"], view["unsecured_exposure"]) == (
            "11000.00", "5000.00", "6000.00")
        assert [(s["security_id"], s["status"]) for s in view["securities"]] == [("G-BG1", "active")]

        # April: the guarantee has ended
        assert answer(await credit.check("G", "O3", "2000.00", on="2025-04-01")) == (
            "review", ["limit_exceeded"], "0.00", "-1000.00")
        april = await credit.review("2025-04-01")
        placed = [(h["customer_id"], h["reasons"]) for h in april["holds_placed"]]
        assert placed == [("G", ["limit_exceeded"])]

        # I's insurance drawn on and given back, by its id alone
        draw = {"amount": "5000.00", "drawn_on": "2025-04-02", "draw_id": "claim-1"}
        drawn = await credit.post("/securities/I-CI1/draw", draw, as_="writer")
        assert drawn.status_code == 200, drawn.text
        assert (drawn.json()["customer_id"], drawn.json()["drawn"]) == ("I", "5000.00")
        again = await credit.post("/securities/I-CI1/draw", draw, as_="writer")  # a retry: drawn once
        assert (again.status_code, again.json()["drawn"]) == (200, "5000.00")
        too_much = await credit.post("/securities/I-CI1/draw",
                                     {"amount": "1000.01", "drawn_on": "2025-04-03"}, as_="writer")
        assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "body.amount"
        released = await credit.post("/securities/I-CI1/release",
                                     {"reason": "policy ended", "on": "2025-04-05"}, as_="writer")
        assert released.status_code == 200 and released.json()["released_on"] == "2025-04-05"
        unknown = await credit.post("/securities/NOPE/release", {"reason": "x"}, as_="writer")
        assert unknown.status_code == 404

        records = await read_topic(credit_broker.bootstrap, CREDIT_TOPIC, timeout=WAIT, until=lambda rs: any(
            orjson.loads(r.value)["type"] == "credit.hold_placed" for r in rs))
    expiring = [m["data"] for m in published_once(records) if m["type"] == "credit.security_expiring"]
    assert [(e["customer_id"], e["security_id"], e["valid_until"], e["days_left"]) for e in expiring] == [
        ("G", "G-BG1", "2025-03-31", 29)]
