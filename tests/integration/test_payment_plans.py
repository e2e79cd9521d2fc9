"""Payment plans end to end: asked for, refused, approved by someone else, reminded of, paid,
broken and completed, through the ledger's feed and the dunning service's REST surface and
``ar.dunning.actions``, on SQLite and PostgreSQL. Every figure is worked out by hand below.

The default policy: levels 1 courtesy (-3 days), 2 first notice (7), 3 second notice (21,
fee 5.00, 14 days after the last notice), 4 phone call (35), ...; plans: 5 days' grace,
reminders 3 days before each instalment.

- P owes P-1 900.00 (due 01-31) and P-2 300.00 (due 02-04). The run of 02-07 sends P-1's
  first notice (level 2, 7 days past due). On 02-10 alice asks for a plan covering both
  (1,200.00): 500 + 600 is refused (422 naming body.instalments); 600.00 on 03-01 and 600.00
  on 04-01 is asked for. Alice cannot approve it (403); the manager does.
- While it stands nothing is dunned: the runs of 02-25 and 03-07 (P-1 at 35 days past due,
  the phone-call level) send P no notice. Reminders: 02-26 (3 days before 03-01) of
  instalment 1, 600.00; 03-29 of instalment 2, 600.00; never twice.
- 600.00 paid on 02-28 (oldest first: P-1 to 300.00 open) pays instalment 1. Nothing comes
  for instalment 2: the run of 04-06 (its due date plus 5) leaves the plan; the run of 04-07
  breaks it, and the same run duns what is open at the next level: P-1 (level 2 -> 3,
  second notice, 66 days past due) and P-2 (0 -> 2), 300.00 + 300.00 + the 5.00 fee.
- Q owes Q-1 400.00 (due 01-31): a plan of 200.00 on 03-01 and 200.00 on 04-01, approved,
  paid 200.00 on 02-27 and 200.00 on 03-30: completed on 03-30.
- R owes R-1 100.00 (due 01-31): first notice on 02-07 (level 2); its plan is rejected, so the
  run of 02-25 dunes it again: the second notice (level 3, 18 days after the first), 100.00
  + 5.00; the phone call (level 4, fee 10.00) on 03-29, 32 days later (on 03-07 only 10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from services.dunning.settings import DunningSettings
from shared.broker import EmbeddedBroker
from tests.integration.dunning_harness import ACTIONS_TOPIC, InProcessDunning
from tests.integration.feed_harness import published_once, service_database_url
from tests.integration.ledger_harness import (
    SESSION_TIMEOUT_MS,
    InProcessLedger,
    Publisher,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
    read_topic,
)

WAIT = 30.0
ROLES = {"alice": ["dunning:read", "dunning:write", "dunning:approve"],
         "manager": ["dunning:read", "dunning:write", "dunning:approve"]}


def as_(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-{role}"}


def settings(tmp_path: Path, bootstrap: str, database_url: str) -> DunningSettings:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({f"token-{role}": {"name": role, "scopes": scopes}
                                  for role, scopes in ROLES.items()}))
    return DunningSettings.for_service(
        "dunning", kafka_bootstrap=bootstrap, database_url=service_database_url(database_url, "dunning"),
        api_tokens_file=tokens, session_timeout_ms=SESSION_TIMEOUT_MS)


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def run(dunning: InProcessDunning, as_of: str) -> list[dict[str, Any]]:
    """The run of a date: its notices (reminders among them)."""
    answer = await ok(await dunning.http.post("/runs", json={"as_of": as_of}, headers=as_("alice")))
    notices: list[dict[str, Any]] = answer["notices"]
    return notices


def shown(notices: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((n["customer_id"], n["kind"], n["level"], n.get("instalment"), n["total_due"],
                   sorted(line["invoice_id"] for line in n["invoices"])) for n in notices)


async def decide(dunning: InProcessDunning, plan_id: str, action: str, body: dict[str, Any],
                 role: str = "manager") -> Any:
    return await dunning.http.post(f"/payment-plans/{plan_id}/{action}", json=body, headers=as_(role))


def plan_body(plan_id: str, requested_on: str, *instalments: tuple[str, str], **more: Any) -> dict[str, Any]:
    return {"plan_id": plan_id, "currency": "EUR", "requested_on": requested_on, "reason": "cash flow",
            "instalments": [{"due_date": d, "amount": a} for d, a in instalments], **more}


async def test_a_plan_is_asked_for_approved_by_someone_else_reminded_broken_and_another_completed(
    dunning_broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    bootstrap = dunning_broker.bootstrap
    async with InProcessLedger(ledger_settings(bootstrap, database_url)), \
            InProcessDunning(settings(tmp_path, bootstrap, database_url)) as dunning, \
            Publisher(bootstrap) as publisher:
        dunning.http.headers.update(as_("alice"))
        await publisher.send_all([
            invoice_issued("P", "P-1", "900.00", issue="2025-01-01", due="2025-01-31"),
            invoice_issued("P", "P-2", "300.00", issue="2025-01-05", due="2025-02-04"),
            invoice_issued("Q", "Q-1", "400.00", issue="2025-01-01", due="2025-01-31"),
            invoice_issued("R", "R-1", "100.00", issue="2025-01-01", due="2025-01-31"),
        ])
        for customer, count in (("P", 2), ("Q", 1), ("R", 1)):
            await poll(lambda c=customer: dunning.view(c),
                       lambda v, n=count: v is not None and len(v["invoices"]) == n, timeout=WAIT,
                       what=f"{customer}'s invoices known to dunning")

        first = await run(dunning, "2025-02-07")
        assert ("P", "dunning", 2, None, "900.00", ["P-1"]) in shown(first)

        # ---- asked for: instalments that do not add up are refused, naming the field
        refused = await dunning.http.post("/customers/P/payment-plans", json=plan_body(
            "PLAN-P", "2025-02-10", ("2025-03-01", "500.00"), ("2025-04-01", "600.00")))
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "body.instalments"
        assert "1100.00" in refused.json()["detail"] and "1200.00" in refused.json()["detail"]
        out_of_order = await dunning.http.post("/customers/P/payment-plans", json=plan_body(
            "PLAN-P", "2025-02-10", ("2025-04-01", "600.00"), ("2025-03-01", "600.00")))
        assert out_of_order.status_code == 422
        assert out_of_order.json()["errors"][0]["field"] == "body.instalments"
        body = plan_body("PLAN-P", "2025-02-10", ("2025-03-01", "600.00"), ("2025-04-01", "600.00"))
        plan = await ok(await dunning.http.post("/customers/P/payment-plans", json=body), 201)
        assert {k: plan[k] for k in ("plan_id", "status", "invoice_ids", "total", "requested_by")} == {
            "plan_id": "PLAN-P", "status": "requested", "invoice_ids": ["P-1", "P-2"], "total": "1200.00",
            "requested_by": "alice"}
        again = await ok(await dunning.http.post("/customers/P/payment-plans", json=body), 201)
        assert again == plan  # the same request again: the same plan
        taken = await dunning.http.post("/customers/Q/payment-plans", json=body)
        assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "body.plan_id"

        # ---- four eyes: the one who asked cannot approve; a manager can
        self_approval = await decide(dunning, "PLAN-P", "approve", {"approved_on": "2025-02-11"}, "alice")
        assert self_approval.status_code == 403, self_approval.text
        assert self_approval.json()["type"].endswith("four-eyes")
        approved = await ok(await decide(dunning, "PLAN-P", "approve", {"approved_on": "2025-02-11"}))
        assert (approved["status"], approved["decided_by"], approved["decided_on"]) == (
            "active", "manager", "2025-02-11")

        await ok(await dunning.http.post("/customers/Q/payment-plans", json=plan_body(
            "PLAN-Q", "2025-02-10", ("2025-03-01", "200.00"), ("2025-04-01", "200.00"))), 201)
        await ok(await decide(dunning, "PLAN-Q", "approve", {"approved_on": "2025-02-11"}))
        await ok(await dunning.http.post("/customers/R/payment-plans", json=plan_body(
            "PLAN-R", "2025-02-10", ("2025-03-01", "100.00"))), 201)
        rejected = await ok(await decide(dunning, "PLAN-R", "reject",
                                         {"reason": "no history", "rejected_on": "2025-02-11"}))
        assert (rejected["status"], rejected["rejection_reason"]) == ("rejected", "no history")

        # ---- while they stand nothing is dunned; the reminders come 3 days before each instalment
        assert shown(await run(dunning, "2025-02-25")) == [("R", "dunning", 3, None, "105.00", ["R-1"])]
        assert shown(await run(dunning, "2025-02-26")) == [
            ("P", "instalment_reminder", 0, 1, "600.00", ["P-1", "P-2"]),
            ("Q", "instalment_reminder", 0, 1, "200.00", ["Q-1"])]
        assert await run(dunning, "2025-02-27") == []
        await publisher.send_all([
            payment_received("Q", "PAY-Q1", "200.00", received="2025-02-27"),
            payment_received("P", "PAY-P1", "600.00", received="2025-02-28"),
        ])
        plan = await poll(lambda: dunning.json("/payment-plans/PLAN-P"), lambda p: p["paid"] == "600.00",
                          timeout=WAIT, what="P's first instalment paid")
        assert [i["unpaid"] for i in plan["instalments"]] == ["0.00", "600.00"]
        await poll(lambda: dunning.json("/payment-plans/PLAN-Q"), lambda p: p["paid"] == "200.00",
                   timeout=WAIT, what="Q's first instalment paid")
        assert await run(dunning, "2025-03-07") == []  # P-1 at 35 days past due: paused
        assert shown(await run(dunning, "2025-03-29")) == [
            ("P", "instalment_reminder", 0, 2, "600.00", ["P-1", "P-2"]),
            ("Q", "instalment_reminder", 0, 2, "200.00", ["Q-1"]),
            ("R", "dunning", 4, None, "110.00", ["R-1"])]
        await publisher.send(payment_received("Q", "PAY-Q2", "200.00", received="2025-03-30"))
        completed = await poll(lambda: dunning.json("/payment-plans/PLAN-Q"),
                               lambda p: p["status"] == "completed", timeout=WAIT, what="Q's plan completed")
        assert (completed["closed_on"], completed["paid"]) == ("2025-03-30", "400.00")

        # ---- instalment 2 missed: broken by the first run after its due date plus the grace
        assert await run(dunning, "2025-04-06") == []
        assert (await dunning.json("/payment-plans/PLAN-P"))["status"] == "active"
        broken_run = await run(dunning, "2025-04-07")
        assert shown(broken_run) == [("P", "dunning", 3, None, "605.00", ["P-1", "P-2"])]
        broken = await dunning.json("/payment-plans/PLAN-P")
        assert (broken["status"], broken["closed_on"], broken["broken_instalment"]) == (
            "broken", "2025-04-07", 2)
        view = await dunning.view("P")
        assert view is not None
        assert {i["invoice_id"]: i["level"] for i in view["invoices"]} == {"P-1": 3, "P-2": 2}

        listed = await dunning.json("/customers/P/payment-plans")
        assert [p["plan_id"] for p in listed["plans"]] == ["PLAN-P"]

        # ---- the KPIs and the worklist count plans
        kpis = await poll(lambda: dunning.json("/kpis", **{"from": "2025-02-01", "to": "2025-04-30"}),
                          lambda k: k["plans_broken"] == 1, timeout=WAIT, what="KPIs with the broken plan")
        assert (kpis["plans_agreed"], kpis["plans_completed"], kpis["plans_broken"]) == (2, 1, 1)
        worklist = await dunning.json("/worklist", as_of="2025-04-07")
        row = next(r for r in worklist["customers"] if r["customer_id"] == "P")
        assert {k: row[k] for k in ("plans_agreed", "plans_completed", "plans_broken", "plan_status")} == {
            "plans_agreed": 1, "plans_completed": 0, "plans_broken": 1, "plan_status": None}
        timeline = await dunning.json("/customers/P/timeline", limit=100)
        kinds = [e["kind"] for e in timeline]
        for kind in ("plan_requested", "plan_agreed", "instalment_reminder", "plan_broken"):
            assert kind in kinds, kinds

        # ---- every step on ar.dunning.actions
        expected = {"dunning.plan_requested": 3, "dunning.plan_agreed": 2, "dunning.plan_rejected": 1,
                    "dunning.plan_broken": 1, "dunning.plan_completed": 1}
        records = await read_topic(
            bootstrap, ACTIONS_TOPIC, timeout=WAIT,
            until=lambda rs: sum(orjson.loads(r.value)["type"].startswith("dunning.plan_") for r in rs) >= 8)
    published = published_once(records)
    steps: dict[str, list[dict[str, Any]]] = {}
    for message in published:
        steps.setdefault(message["type"], []).append(message["data"])
    assert {t: len(steps.get(t, [])) for t in expected} == expected
    (broken_event,) = steps["dunning.plan_broken"]
    assert (broken_event["plan_id"], broken_event["invoice_ids"], broken_event["broken_instalment"]) == (
        "PLAN-P", ["P-1", "P-2"], 2)
    assert [i["amount"] for i in broken_event["instalments"]] == ["600.00", "600.00"]
    reminders = [(n["customer_id"], n["instalment"], n["as_of"]) for n in steps["dunning.notice_issued"]
                 if n["kind"] == "instalment_reminder"]
    assert sorted(reminders) == [("P", 1, "2025-02-26"), ("P", 2, "2025-03-29"),
                                 ("Q", 1, "2025-02-26"), ("Q", 2, "2025-03-29")]
