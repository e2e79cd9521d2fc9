"""The credit service end to end: ERP events → ledger → ar.ledger.events → credit → REST and
ar.credit.events, through the real embedded broker, on SQLite and PostgreSQL.

One timeline in 2025 (the review registry only goes forward), four customers under the
default rules (hold over the limit, more than 60 days past due, or at grade E;
reservations last 30 days):

- L, limit 5,000.00: checks approve and reserve, a check over the limit goes to review, an
  invoice for no reserved order crosses the limit (hold ``limit_exceeded``, checks answer
  ``hold``), a payment releases it (``auto``); the order's invoice consumes its
  reservation; an unconsumed reservation expires in the review after its 30 days.
- OD, limit 50,000.00: one invoice due January 31, 61 days past due in the review of
  April 2 (hold ``overdue_days``), paid on April 6 (released).
- M: a manual hold and release need ``credit:override``, and the audit trail shows who.
- R: paid on time, graded A on February 1; a second invoice 29 days late makes it B on
  April 1 (factors that add up to the score), C on April 21, and B again once paid.

Nothing waits a fixed time: every wait polls a condition with a deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from services.credit.domain import credit_hold_id
from services.credit.replay import replay_credit
from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import (
    CREDIT_TOPIC,
    WAIT,
    InProcessCredit,
    credit_settings_for,
    write_tokens,
)
from tests.integration.dunning_harness import profile
from tests.integration.feed_harness import (
    dead_letter_reasons,
    feed_bad_and_twice,
    h_messages,
    published_once,
)
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    cloud_event,
    encode,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
    read_topic,
)


def limit(amount: str) -> dict[str, str]:
    return {"currency": "EUR", "amount": amount}


def eur(view: dict[str, Any]) -> dict[str, Any]:
    """The view's EUR position; empty until the customer has one (a wait goes on polling)."""
    return next((p for p in view["positions"] if p["currency"] == "EUR"), {"exposure": None, "limit": None})


def figures(answer: dict[str, Any]) -> tuple[Any, ...]:
    return (answer["decision"], answer["reasons"], answer["exposure"], answer["limit"],
            answer["available_credit"])


async def test_holds_releases_reservations_reviews_and_risk_through_the_ledger(
    credit_broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    settings = credit_settings_for(credit_broker.bootstrap, database_url, write_tokens(tmp_path))
    async with InProcessLedger(ledger_settings(credit_broker.bootstrap, database_url)), \
            InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        await publisher.send_all([
            profile("L", event_id="p-L", credit_limit=limit("5000.00")),
            profile("OD", event_id="p-OD", credit_limit=limit("50000.00")),
            profile("M", event_id="p-M", credit_limit=limit("5000.00")),
            profile("R", event_id="p-R", credit_limit=limit("10000.00")),
            invoice_issued("OD", "OD-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
            invoice_issued("R", "R-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
            payment_received("R", "PR-1", "1000.00", received="2025-01-31"),
        ])
        await credit.wait_view("OD", lambda v: eur(v)["exposure"] == "1000.00", "OD-1 in OD's exposure")

        async def r_types() -> set[str]:
            response = await credit.get("/audit/customers/R")  # 404 until credit has seen R
            return {e["type"] for e in response.json()["events"]} if response.status_code == 200 else set()

        # the payment may come first (another topic): wait for the invoice itself, then paid
        await poll(r_types, lambda types: "InvoiceOpened" in types, timeout=30, what="R-1 known to credit")
        await credit.wait_view("R", lambda v: eur(v)["exposure"] == "0.00" and eur(v)["limit"] == "10000.00"
                               and not v["unapplied_cash"], "R-1 paid")
        await credit.wait_view("M", lambda v: v["limit"] == "5000.00", "M's limit")

        # February 1: R paid on time: graded A
        february = await credit.review("2025-02-01")
        assert (february["repeat"], february["as_of"]) == (False, "2025-02-01")
        grades = {g["customer_id"]: (g["previous"], g["grade"], g["score"])
                  for g in february["grade_changes"]}
        assert grades["R"] == (None, "A", "0.00")
        assert february["holds_placed"] == []
        await publisher.send(invoice_issued("R", "R-2", "1000.00", issue="2025-02-01", due="2025-03-03"))

        # ---- L: checks, reservations, a limit crossed and a payment releasing the hold
        await publisher.send(invoice_issued("L", "L-1", "3000.00", issue="2025-03-01", due="2025-03-31"))
        await credit.wait_view("L", lambda v: v["exposure"] == "3000.00", "L-1 in L's exposure")
        approved = await credit.check("L", "O1", "1500.00", on="2025-03-02")
        assert figures(approved) == ("approve", [], "3000.00", "5000.00", "2000.00")
        assert approved["reserved_until"] == "2025-04-01"
        assert await credit.check("L", "O1", "1500.00", on="2025-03-03") == approved  # reserved once
        conflicting = await credit.post("/credit-checks", {
            "customer_id": "L", "order_id": "O1", "amount": "1600.00", "currency": "EUR"}, as_="checker")
        assert conflicting.status_code == 409 and conflicting.json()["errors"][0]["field"] == "body.order_id"
        assert figures(await credit.check("L", "O2", "1000.00", on="2025-03-02")) == (
            "review", ["limit_exceeded"], "4500.00", "5000.00", "500.00")
        await publisher.send(invoice_issued("L", "L-2", "2500.00", issue="2025-03-05", due="2025-04-04"))
        on_hold = await credit.wait_view("L", lambda v: v["on_hold"], "L on hold")
        assert (on_hold["exposure"], on_hold["available"]) == ("7000.00", "-2000.00")
        [hold] = on_hold["active_holds"]
        assert (hold["hold_id"], hold["kind"], hold["reasons"], hold["placed_by"]) == (
            credit_hold_id("L", 1), "automatic", ["limit_exceeded"], "auto")
        held = await credit.check("L", "O3", "1.00", on="2025-03-06")
        assert figures(held) == ("hold", ["limit_exceeded"], "7000.00", "5000.00", "-2000.00")
        assert held["hold_ids"] == [hold["hold_id"]]
        await publisher.send(payment_received("L", "PL-1", "2500.00", received="2025-03-20"))
        released = await credit.wait_view("L", lambda v: not v["on_hold"], "L's hold released")
        assert released["exposure"] == "4500.00"
        assert figures(await credit.check("L", "O4", "500.00", on="2025-03-21")) == (
            "approve", [], "4500.00", "5000.00", "500.00")
        # the order's invoice consumes its reservation: 4500 open + 500 reserved
        await publisher.send(cloud_event("invoice.issued", {
            "invoice_id": "L-3", "customer_id": "L", "issue_date": "2025-03-22", "due_date": "2025-04-21",
            "currency": "EUR", "amount": "1500.00", "attributes": {"order_id": "O1"}}, event_id="inv-L-3"))
        consumed = await credit.wait_view("L", lambda v: [r["order_id"] for r in v["reservations"]] == ["O4"],
                                          "O1's reservation consumed by L-3")
        assert (eur(consumed)["open_receivables"], eur(consumed)["reserved"], consumed["exposure"]) == (
            "4500.00", "500.00", "5000.00")

        # ---- M: a manual hold and its release need credit:override, and are audited
        for role in ("checker", "writer"):
            refused = await credit.post("/customers/M/holds", {"reason": "fraud check"}, as_=role)
            assert refused.status_code == 403, refused.text
        assert (await credit.post("/customers/M/holds", {"reason": "x"}, as_=None)).status_code == 401
        placed = await credit.post("/customers/M/holds", {"reason": "fraud check, call first"},
                                   as_="overrider")
        assert placed.status_code == 201, placed.text
        manual = placed.json()
        assert (manual["kind"], manual["reasons"], manual["placed_by"], manual["note"]) == (
            "manual", ["manual"], "overrider", "fraud check, call first")
        assert figures(await credit.check("M", "OM-1", "10.00", on="2025-03-25")) == (
            "hold", ["manual"], "0.00", "5000.00", "5000.00")
        release_path = f"/holds/{manual['hold_id']}/release"
        for role in ("checker", "writer", "reader"):
            refused = await credit.post(release_path, {"reason": "verified"}, as_=role)
            assert refused.status_code == 403, refused.text
        missing_reason = await credit.post(release_path, {}, as_="overrider")
        assert missing_reason.status_code == 422
        assert missing_reason.json()["errors"][0]["field"] == "body.reason"
        release = await credit.post(release_path, {"reason": "customer verified"}, as_="overrider")
        assert release.status_code == 200, release.text
        assert (release.json()["released_by"], release.json()["reason"]) == ("overrider", "customer verified")
        again = await credit.post(release_path, {"reason": "twice"}, as_="overrider")
        assert again.status_code == 409, again.text
        # the holds read model lists it (GET /holds was a 500 as soon as a hold existed), its
        # instants in UTC with their offset (SQLite keeps them without one)
        listed = await poll(lambda: credit.get("/holds", customer_id="M", status="released"),
                            lambda r: r.status_code != 200 or bool(r.json()["holds"]), timeout=WAIT,
                            what="M's released hold listed")
        assert listed.status_code == 200, listed.text
        [row] = listed.json()["holds"]
        assert (row["hold_id"], row["released_by"]) == (manual["hold_id"], "overrider")
        assert {datetime.fromisoformat(row[k]).utcoffset() for k in ("placed_at", "released_at")} == {
            timedelta(0)}
        unknown = await credit.post("/holds/no-such-hold/release", {"reason": "?"}, as_="overrider")
        assert unknown.status_code == 404, unknown.text
        assert (await credit.check("M", "OM-2", "10.00", on="2025-03-26"))["decision"] == "approve"
        audit = (await credit.json("/audit/customers/M"))["events"]
        assert [(e["type"], e["by"]) for e in audit if e["type"].startswith("Hold")] == [
            ("HoldPlaced", "overrider"), ("HoldReleased", "overrider")]
        assert [e["data"]["check"]["decision"] for e in audit if e["type"] == "CreditChecked"] == [
            "hold", "approve"]
        # a limit set over REST is audited with the caller too
        put = await credit.put("/customers/M/credit-limit", {"currency": "EUR", "amount": "6000.00"},
                               as_="writer")
        assert put.status_code == 200 and put.json()["limit"] == "6000.00", put.text
        bad = await credit.put("/customers/M/credit-limit", {"currency": "EUR", "amount": "1.001"},
                               as_="writer")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.amount", bad.text
        bad = await credit.put("/customers/M/credit-limit", {"currency": "EUR", "amount": 10.5}, as_="writer")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.amount", bad.text
        assert (await credit.put("/customers/M/credit-limit", {"currency": "EUR", "amount": "1.00"},
                                 as_="overrider")).status_code == 403
        audit = (await credit.json("/audit/customers/M"))["events"]
        assert audit[-1]["type"] == "LimitSet" and audit[-1]["by"] == "writer"

        # ---- the reviews of April 1 and 2: OD past 60 days on April 2; R graded B on April 1
        april_1 = await credit.review("2025-04-01")
        assert april_1["holds_placed"] == []
        r_change = next(g for g in april_1["grade_changes"] if g["customer_id"] == "R")
        contributions = {f["name"]: f["contribution"] for f in r_change["factors"]}
        assert contributions == {
            "weighted_days_late": "8.46",  # (0 x 4 + 29 x 4) / 8 = 14.5 days -> 14.5 / 60 x 35
            "late_share": "12.50",  # 1 of 2 late
            "max_days_past_due": "8.06",  # 29 / 90 x 25
            "dispute_rate": "0.00",
            "trend": "0.00",  # nothing due more than 90 days before
        }
        assert (r_change["previous"], r_change["grade"], r_change["score"]) == ("A", "B", "29.02")
        assert sum(Decimal(v) for v in contributions.values()) == Decimal(r_change["score"])
        r_view = await credit.wait_view("R", lambda v: v["risk_grade"] == "B", "R graded B")
        assert r_view["risk_score"] == "29.02"
        assert sum(Decimal(f["contribution"]) for f in r_view["risk_factors"]) == Decimal("29.02")

        april_2 = await credit.review("2025-04-02")
        [od_hold] = [h for h in april_2["holds_placed"] if h["customer_id"] == "OD"]
        assert (od_hold["reasons"], od_hold["exposure"], od_hold["limit"], od_hold["effective_date"]) == (
            ["overdue_days"], "1000.00", "50000.00", "2025-04-02")
        assert od_hold["overdue_invoices"] == [{"invoice_id": "OD-1", "currency": "EUR",
                                                "due_date": "2025-01-31", "days_past_due": 61,
                                                "open_amount": "1000.00"}]
        assert (await credit.check("OD", "OOD-1", "10.00", on="2025-04-03"))["decision"] == "hold"
        # a second review of the same date changes nothing; an earlier date is refused
        repeat = await credit.review("2025-04-02")
        assert repeat["repeat"] and repeat["review_id"] == april_2["review_id"]
        assert repeat["holds_placed"] == 1
        earlier = await credit.post("/reviews", {"as_of": "2025-03-01"}, as_="writer")
        assert earlier.status_code == 409 and earlier.json()["errors"][0]["field"] == "body.as_of"
        assert (await credit.post("/reviews", {"as_of": "2025-04-03"}, as_="checker")).status_code == 403

        await publisher.send(payment_received("OD", "POD-1", "1000.00", received="2025-04-06"))
        await credit.wait_view("OD", lambda v: not v["on_hold"], "OD's hold released by the payment")

        # ---- April 21: L's O4 (checked March 21, counted through April 20) expires
        april_21 = await credit.review("2025-04-21")
        assert april_21["reservations_expired"] == 1
        l_view = await credit.wait_view("L", lambda v: v["reservations"] == [], "O4 expired")
        assert l_view["exposure"] == "4500.00"
        assert (await credit.check("L", "O4", "500.00", on="2025-04-22"))["reserved_until"] == "2025-04-20"
        # R-2 is 49 days late: (4 x 49) / 8 = 24.5 days -> 14.29, 12.50, 49 / 90 x 25 = 13.61: C
        r_change = next(g for g in april_21["grade_changes"] if g["customer_id"] == "R")
        assert (r_change["previous"], r_change["grade"], r_change["score"]) == ("B", "C", "40.40")
        # paid on April 22, 50 days late: nothing open any more: 25 days -> 14.58, 12.50, 0: B again
        await publisher.send(payment_received("R", "PR-2", "1000.00", received="2025-04-22"))
        await credit.wait_view("R", lambda v: v["exposure"] == "0.00", "R-2 paid")
        april_23 = await credit.review("2025-04-23")
        r_change = next(g for g in april_23["grade_changes"] if g["customer_id"] == "R")
        assert (r_change["previous"], r_change["grade"], r_change["score"]) == ("C", "B", "27.08")

        # asked again, a review waits for the read models (so the rebuild below compares them all)
        assert (await credit.review("2025-04-23"))["repeat"]
        metrics = await credit.metrics()
        assert metrics.get("receivables_messages_deadlettered_total", 0) == 0
        assert metrics["receivables_credit_checks_total"] == 9  # the conflicting one was refused
        assert metrics["receivables_credit_checks_total{decision=approve,repeat=true}"] == 2  # from memory

        # ar.credit.events: holds and releases as the contract has them, keyed by customer
        def all_seen(records: list[Any]) -> bool:  # the last event published is R's grade of April 23
            return any(orjson.loads(r.value)["data"].get("as_of") == "2025-04-23" for r in records)

        records = await read_topic(credit_broker.bootstrap, CREDIT_TOPIC, timeout=WAIT, until=all_seen)
    published = published_once(records)
    assert {e["source"] for e in published} == {"receivables/credit"}
    placed_events = sorted((e["data"]["customer_id"], e["data"]["reasons"], e["data"]["exposure"],
                            e["data"]["limit"]) for e in published if e["type"] == "credit.hold_placed")
    assert placed_events == [("L", ["limit_exceeded"], "7000.00", "5000.00"),
                             ("M", ["manual"], "0.00", "5000.00"),
                             ("OD", ["overdue_days"], "1000.00", "50000.00")]
    released_events = sorted((e["data"]["customer_id"], e["data"]["released_by"]) for e in published
                             if e["type"] == "credit.hold_released")
    assert released_events == [("L", "auto"), ("M", "overrider"), ("OD", "auto")]
    limits = sorted((e["data"]["customer_id"], e["data"]["limit"]) for e in published
                    if e["type"] == "credit.limit_changed")
    assert limits == [("L", "5000.00"), ("M", "5000.00"), ("M", "6000.00"), ("OD", "50000.00"),
                      ("R", "10000.00")]
    r_grades = [(e["data"]["previous_grade"], e["data"]["grade"]) for e in published
                if e["type"] == "credit.risk_grade_changed" and e["data"]["customer_id"] == "R"]
    assert r_grades == [(None, "A"), ("A", "B"), ("B", "C"), ("C", "B")]

    # the service is stopped: a rebuild of the read models from the event store is identical
    assert replay_credit(settings, verify=True) == 0


async def test_bad_messages_are_dead_lettered_and_repeats_change_nothing(
    credit_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Driven with ar.ledger.events messages built by the ledger's own outbound translation."""
    settings = credit_settings_for(credit_broker.bootstrap, f"sqlite:///{tmp_path / 'test.db'}",
                                   write_tokens(tmp_path))
    async with InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        # a credit limit with more digits than EUR has: refused by the feed's bounds
        await feed_bad_and_twice(publisher, [(b"H", encode(cloud_event("ledger.customer_updated", {
            "customer_id": "H", "name": "H Ltd", "credit_limit": {"currency": "EUR", "amount": "10.001"}},
            event_id="bad-2")))], h_messages())
        await credit.wait_view("H", lambda v: v["positions"] and eur(v)["open_receivables"] == "250.00",
                               "H-1 with the payment applied")
        metrics = await credit.wait_metric("receivables_messages_deadlettered_total", 3, timeout=WAIT)
        assert metrics["receivables_messages_deadlettered_total"] == 3
        reasons = await dead_letter_reasons(credit_broker.bootstrap, 3, timeout=WAIT)
        assert any("not JSON" in r for r in reasons)
        assert any("data.currency" in r for r in reasons)
        assert any(r.startswith("data.credit_limit.amount: 10.001 has more than 2 decimal digits")
                   for r in reasons), reasons
        view = await credit.view("H")
        assert view is not None and view["limits"] == []
        # validation names the field; a missing token is 401
        response = await credit.post("/credit-checks", {"customer_id": "H", "order_id": "X", "amount": 5,
                                                        "currency": "EUR"}, as_="checker")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.amount"
        response = await credit.post("/credit-checks", {
            "customer_id": "H", "order_id": "X", "amount": "5.001", "currency": "EUR"}, as_="checker")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body.amount"
        response = await credit.post("/credit-checks", {"customer_id": "H", "order_id": "X", "amount": "5.00",
                                                        "currency": "EUR"}, as_=None)
        assert response.status_code == 401
        # a customer credit has no limit for: review, and the answer stands
        answer = await credit.check("NEW", "N-1", "5.00", on="2025-01-02")
        assert figures(answer) == ("review", ["no_limit"], "0.00", None, None)
