"""Collections end to end: collectors, assignment rules and manual assignment, through the
ledger's feed and the dunning service's REST surface, on SQLite and PostgreSQL.

Three customers meet three rules (a segment, a country, an invoice attribute); a manual
assignment wins over the rules, survives new facts, and is undone; a change of the rules
reaches every customer at the next run; credit's risk grade (``ar.credit.events``) moves a
customer under a rule on the grade. Nothing waits a fixed time: every wait polls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from services.dunning.replay import replay_dunning
from shared.broker import EmbeddedBroker
from tests.integration.dunning_harness import (
    CREDIT_TOPIC,
    InProcessDunning,
    dunning_settings_for,
    profile,
)
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    cloud_event,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
)

WAIT = 30.0


def with_attributes(event: dict[str, Any], **attributes: str) -> dict[str, Any]:
    return {**event, "data": {**event["data"], "attributes": attributes}}


RULES = [
    {"collector_id": "alice", "when": {"segment": "enterprise"}},
    {"collector_id": "bob", "when": {"country": "DE", "min_open_amount": "500.00"}},
    {"collector_id": "carol", "when": {"attribute": {"name": "region", "value": "north"}}},
]


@asynccontextmanager
async def ledger_and_dunning(broker: EmbeddedBroker, database_url: str
                             ) -> AsyncIterator[tuple[InProcessDunning, Publisher]]:
    """The ledger and dunning in process on the database, and a publisher of ERP messages."""
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)), \
            InProcessDunning(dunning_settings_for(broker.bootstrap, database_url)) as dunning, \
            Publisher(broker.bootstrap) as publisher:
        yield dunning, publisher


async def ok(call: Any, status: int = 200) -> Any:
    response = await call
    assert response.status_code == status, response.text
    return response.json()


async def assignment(dunning: InProcessDunning, customer: str, expected: tuple[str | None, str | None]
                     ) -> dict[str, Any]:
    view = await poll(lambda: dunning.view(customer),
                      lambda v: v is not None and (v["collector_id"], v["assigned_by"]) == expected,
                      timeout=WAIT, what=f"{customer} assigned {expected}")
    assert view is not None
    return view


async def test_rules_assign_customers_and_a_manual_assignment_wins_until_removed(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    async with ledger_and_dunning(dunning_broker, database_url) as (dunning, publisher):
        for collector_id, name in (("alice", "Alice A"), ("bob", "Bob B"), ("carol", "Carol C")):
            stored = await ok(dunning.put(f"/collectors/{collector_id}",
                                          {"name": name, "email": f"{collector_id}@example.com"}))
            assert stored == {"collector_id": collector_id, "name": name,
                              "email": f"{collector_id}@example.com", "active": True}
        assert [c["collector_id"] for c in (await dunning.json("/collectors"))["collectors"]] == [
            "alice", "bob", "carol"]

        # rules that name no known collector, or money as a JSON number, are refused
        refused = await dunning.put("/assignment-rules", {"rules": [{"collector_id": "dave"}]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "body.rules", refused.text
        refused = await dunning.put("/assignment-rules", {"rules": [
            {"collector_id": "bob", "when": {"min_open_amount": 500}}]})
        assert refused.status_code == 422, refused.text
        assert "min_open_amount" in refused.json()["errors"][0]["field"], refused.text
        rules = await ok(dunning.put("/assignment-rules", {"rules": RULES}))
        assert rules["version"] == 1 and rules["rules"] == RULES
        assert (await ok(dunning.put("/assignment-rules", {"rules": RULES})))["version"] == 1  # unchanged

        await publisher.send_all([
            profile("X", event_id="p-X", segment="enterprise", country="DE"),
            profile("Y", event_id="p-Y", segment="smb", country="DE"),
            profile("Z", event_id="p-Z", segment="smb", country="FR"),
            invoice_issued("X", "X-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
            invoice_issued("Y", "Y-1", "400.00", issue="2025-01-01", due="2025-01-31"),
            with_attributes(invoice_issued("Z", "Z-1", "300.00", issue="2025-01-01", due="2025-01-31"),
                            region="north"),
        ])
        # X: enterprise (the first rule, though DE too); Y: DE but owes less than 500.00
        await assignment(dunning, "X", ("alice", "rule"))
        await assignment(dunning, "Y", (None, None))
        await assignment(dunning, "Z", ("carol", "rule"))
        await publisher.send(invoice_issued("Y", "Y-2", "200.00", issue="2025-01-05", due="2025-02-04"))
        await assignment(dunning, "Y", ("bob", "rule"))  # its facts changed: 600.00 open

        # by hand: wins over the rules, also when the customer's facts change, until removed
        refused = await dunning.put("/customers/X/collector", {"collector_id": "dave"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.collector_id"
        assert (await dunning.put("/customers/NOBODY/collector", {"collector_id": "bob"})).status_code == 404
        manual = await ok(dunning.put("/customers/X/collector", {"collector_id": "carol"}))
        assert manual == {"customer_id": "X", "collector_id": "carol", "assigned_by": "manual"}
        await publisher.send(invoice_issued("X", "X-2", "50.00", issue="2025-01-10", due="2025-02-09"))
        view = await poll(lambda: dunning.view("X"),
                          lambda v: v is not None and any(i["invoice_id"] == "X-2" for i in v["invoices"]),
                          timeout=WAIT, what="X-2 known to dunning")
        assert (view["collector_id"], view["assigned_by"]) == ("carol", "manual")
        undone = await ok(dunning.delete("/customers/X/collector"))
        assert undone == {"customer_id": "X", "collector_id": "alice", "assigned_by": "rule"}

        # the worklist of one collector: only its customers, with the collector named
        worklist = await poll(lambda: dunning.json("/worklist", as_of="2025-03-01", collector_id="bob"),
                              lambda w: [r["customer_id"] for r in w["customers"]] == ["Y"],
                              timeout=WAIT, what="bob's worklist")
        (row,) = worklist["customers"]
        shown = ("collector_id", "overdue_amount", "level", "max_days_past_due", "open_tasks",
                 "broken_promises_90d", "last_contact_on", "next_action_on")
        assert {k: row[k] for k in shown} == {
            "collector_id": "bob", "overdue_amount": "600.00", "level": 0,
            "max_days_past_due": 29,  # Y-1, due 01-31
            "open_tasks": 0, "broken_promises_90d": 0, "last_contact_on": None,
            "next_action_on": "2025-01-28"}  # Y-1's courtesy reminder (no run has been made)
        await poll(lambda: dunning.json("/worklist", as_of="2025-03-01"),
                   lambda w: {r["customer_id"]: r["collector_id"] for r in w["customers"]} == {
                       "X": "alice", "Y": "bob", "Z": "carol"},
                   timeout=WAIT, what="everyone's worklist with X back with alice")

        # new rules reach every customer at the next run, whether or not it issues a notice
        reordered = [RULES[2], {"collector_id": "bob", "when": {"country": "DE"}}]
        assert (await ok(dunning.put("/assignment-rules", {"rules": reordered})))["version"] == 2
        await assignment(dunning, "X", ("alice", "rule"))  # not before the run
        await ok(dunning.post("/runs", {"as_of": "2025-01-02"}))  # no invoice due anything yet
        await assignment(dunning, "X", ("bob", "rule"))
        await assignment(dunning, "Y", ("bob", "rule"))
        await assignment(dunning, "Z", ("carol", "rule"))

        # credit grades Z "E": dunning follows ar.credit.events, and a rule on the grade moves Z
        with_grade = [{"collector_id": "alice", "when": {"risk_grade": ["D", "E"]}}, *reordered]
        assert (await ok(dunning.put("/assignment-rules", {"rules": with_grade})))["version"] == 3
        grade = cloud_event("credit.risk_grade_changed", {
            "customer_id": "Z", "grade": "E", "previous_grade": "C", "score": "71.5", "factors": [],
            "as_of": "2025-01-02"}, event_id="credit:00000000-0000-0000-0000-00000000000z:7:0",
            source="receivables/credit")
        await publisher.send_raw(CREDIT_TOPIC, b"Z", orjson.dumps(grade))
        await assignment(dunning, "Z", ("alice", "rule"))
        await publisher.send_raw(CREDIT_TOPIC, b"Z", orjson.dumps(grade))  # redelivered: no news
        await publisher.send_raw(CREDIT_TOPIC, b"Z", orjson.dumps(
            {**grade, "id": "credit:other", "type": "credit.hold_placed"}))  # a type dunning skips
        # then a newer grade, after those on the same partition: once it shows, they were taken
        newer = {**grade, "id": "credit:00000000-0000-0000-0000-00000000000z:9:0",
                 "data": {**grade["data"], "grade": "B", "previous_grade": "E"}}
        await publisher.send_raw(CREDIT_TOPIC, b"Z", orjson.dumps(newer))
        await assignment(dunning, "Z", ("carol", "rule"))  # B: the attribute rule again
        z_events = [type(e).__name__ for e in dunning.app.state.dunning.history("Z")]
        assert z_events.count("RiskGraded") == 2  # E once, then B

        # a collector no longer active: their rules are passed over at the next run, and
        # nobody can be given to them by hand
        await ok(dunning.put("/collectors/carol", {"name": "Carol C", "active": False}))
        refused = await dunning.put("/customers/Z/collector", {"collector_id": "carol"})
        assert refused.status_code == 422 and "not active" in refused.text, refused.text
        await ok(dunning.post("/runs", {"as_of": "2025-01-03"}))
        await assignment(dunning, "Z", (None, None))  # FR, grade B: no other rule matches

        # every change is an event of the customer's account: by rule (which) or by hand (who)
        history = dunning.app.state.dunning.history("X")
        assigned = [(e.collector_id, e.by, e.rule, e.rules_version, e.actor) for e in history
                    if type(e).__name__ == "CollectorAssigned"]
        assert [a[:4] for a in assigned] == [
            ("alice", "rule", 0, 1), ("carol", "manual", None, None), ("alice", "rule", 0, 1),
            ("bob", "rule", 1, 2)]
        assert assigned[1][4] and assigned[2][4], "the manual changes name who made them"


CALLS = {"levels": [{"name": "call", "days_past_due": 1, "channel": "phone_task", "template": "phone_call"}]}


async def test_a_phone_task_completed_and_the_timeline_in_order(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    async with ledger_and_dunning(dunning_broker, database_url) as (dunning, publisher):
        await ok(dunning.put("/collectors/alice", {"name": "Alice A"}))
        await ok(dunning.put("/assignment-rules", {"rules": [{"collector_id": "alice"}]}))  # everyone
        await ok(dunning.put("/policies/calls", CALLS))
        await publisher.send_all([
            profile("W", event_id="p-W", dunning_policy="calls"),
            invoice_issued("W", "W-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
        ])
        await poll(lambda: dunning.view("W"), lambda v: v is not None and v["invoices"]
                   and v["collector_id"] == "alice" and v["policy"] == "calls",
                   timeout=WAIT, what="W known, with its policy and collector")

        run = await ok(dunning.post("/runs", {"as_of": "2025-02-01"}))
        assert [(n["customer_id"], n["channel"]) for n in run["notices"]] == [("W", "phone_task")]
        tasks = await poll(lambda: dunning.json("/tasks", collector_id="alice", status="open"),
                           lambda t: len(t) == 1, timeout=WAIT, what="alice's open task")
        task = tasks[0]  # (the contract's answer: a JSON array of tasks)
        shown = ("customer_id", "notice_id", "kind", "due_on", "collector_id", "status")
        assert {k: task[k] for k in shown} == {
            "customer_id": "W", "notice_id": run["notices"][0]["notice_id"], "kind": "phone_task",
            "due_on": "2025-02-01", "collector_id": "alice", "status": "open"}
        assert await dunning.json("/tasks", collector_id="bob") == []
        assert await dunning.json("/tasks", due_before="2025-02-01") == []

        row = (await dunning.json("/worklist", as_of="2025-02-02", collector_id="alice"))["customers"][0]
        assert {k: row[k] for k in ("customer_id", "collector_id", "overdue_amount", "level", "open_tasks",
                                    "max_days_past_due", "broken_promises_90d", "last_contact_on")} == {
            "customer_id": "W", "collector_id": "alice", "overdue_amount": "1000.00", "level": 1,
            "open_tasks": 1, "max_days_past_due": 2, "broken_promises_90d": 0, "last_contact_on": None}

        path = f"/tasks/{task['task_id']}/complete"
        bad = await dunning.post(path, {"outcome": "promised_maybe", "completed_on": "2025-02-03"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.outcome", bad.text
        done = await ok(dunning.post(path, {"outcome": "promised", "note": "pays Friday",
                                            "completed_on": "2025-02-03"}))
        assert (done["status"], done["outcome"], done["completed_on"]) == ("done", "promised", "2025-02-03")
        assert (await ok(dunning.post(path, {"outcome": "promised", "note": "pays Friday",
                                             "completed_on": "2025-02-03"}))) == done  # the same again
        again = await dunning.post(path, {"outcome": "refused", "completed_on": "2025-02-04"})
        assert again.status_code == 409, again.text
        assert (await dunning.post("/tasks/nope/complete", {"outcome": "reached"})).status_code == 404
        await poll(lambda: dunning.json("/tasks", status="done"), lambda t: len(t) == 1,
                   timeout=WAIT, what="the task done in the read model")

        activity = await ok(dunning.post("/customers/W/activities", {
            "kind": "call", "outcome": "reached", "note": "confirmed the payment",
            "occurred_on": "2025-02-05"}), 201)
        assert (activity["collector_id"], activity["kind"]) == ("alice", "call")  # W's collector
        row = await poll(lambda: dunning.json("/worklist", as_of="2025-02-06", collector_id="alice"),
                         lambda w: w["customers"][0]["last_contact_on"] == "2025-02-05",
                         timeout=WAIT, what="the call as W's last contact")
        assert row["customers"][0]["open_tasks"] == 0
        assert (await dunning.post("/customers/NOBODY/activities", {
            "kind": "note", "note": "x", "occurred_on": "2025-02-05"})).status_code == 404
        await publisher.send(payment_received("W", "PW-1", "1000.00", received="2025-02-07",
                                              allocations=[("W-1", "1000.00")]))
        await poll(lambda: dunning.view("W"), lambda v: v is not None and not v["invoices"][0]["open_amount"]
                   .strip("0."), timeout=WAIT, what="W-1 paid, seen by dunning")

        whole = await dunning.get("/customers/W/timeline", limit=100)
        assert whole.status_code == 200 and "X-Next-Cursor" not in whole.headers, whole.text
        timeline = whole.json()  # (the contract's "one list")
        entries = [(e["at"], e["kind"]) for e in timeline if e["at"].startswith("2025")]
        assert entries == [
            ("2025-02-07", "payment"), ("2025-02-05", "activity"), ("2025-02-03", "task_completed"),
            ("2025-02-01", "task_created"), ("2025-02-01", "notice"), ("2025-01-01", "invoice_opened")]
        kinds = {e["kind"] for e in timeline}
        assert {"assignment", "profile"} <= kinds  # recorded when they happened (no business date)
        # paged: two at a time gives the same entries
        paged, cursor = [], None
        while True:
            after = {"cursor": cursor} if cursor else {}
            page = await dunning.get("/customers/W/timeline", limit=2, **after)
            assert page.status_code == 200, page.text
            paged.extend(page.json())
            cursor = page.headers.get("X-Next-Cursor")
            if cursor is not None:
                assert page.headers["Link"].endswith('rel="next"') and "cursor=" in page.headers["Link"]
            if cursor is None:
                break
        assert paged == timeline
        bad = await dunning.get("/customers/W/timeline", cursor="nonsense")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor", bad.text
        assert (await dunning.get("/customers/NOBODY/timeline")).status_code == 404


async def test_kpis_over_a_period_and_a_replay_gives_the_same(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    """February 2025, worked out by hand (see each figure's comment).

    K1 (alice): K1-1 1000.00 issued 01-01 due 01-31; K1-2 500.00 issued 02-10 due 03-12; a
    promise of 600.00 made 02-05, kept by 600.00 paid on K1-1 on 02-15; a call on 02-03 and a
    note on 02-04 (not a contact).
    K2 (bob): K2-1 800.00 issued 01-15 due 02-14; a promise of 800.00 made 02-01 for 02-10,
    broken by the run of 02-14 (grace to 02-13); paid in full on 02-20; an e-mail on 02-06.
    """
    async with ledger_and_dunning(dunning_broker, database_url) as (dunning, publisher):
        for collector_id in ("alice", "bob"):
            await ok(dunning.put(f"/collectors/{collector_id}", {"name": collector_id.title()}))
        await ok(dunning.put("/assignment-rules", {"rules": [
            {"collector_id": "alice", "when": {"segment": "a"}},
            {"collector_id": "bob", "when": {"segment": "b"}}]}))
        await publisher.send_all([
            profile("K1", event_id="p-K1", segment="a"), profile("K2", event_id="p-K2", segment="b"),
            invoice_issued("K1", "K1-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
            invoice_issued("K2", "K2-1", "800.00", issue="2025-01-15", due="2025-02-14"),
        ])
        for customer in ("K1", "K2"):
            await poll(lambda c=customer: dunning.view(c), lambda v: v is not None and bool(v["invoices"]),
                       timeout=WAIT, what=f"{customer}'s invoice known to dunning")
        await assignment(dunning, "K1", ("alice", "rule"))
        await assignment(dunning, "K2", ("bob", "rule"))
        await ok(dunning.post("/customers/K2/promises", {
            "promised_date": "2025-02-10", "amount": "800.00", "made_on": "2025-02-01"}), 201)
        await ok(dunning.post("/customers/K1/activities", {
            "kind": "call", "note": "will pay part", "occurred_on": "2025-02-03"}), 201)
        await ok(dunning.post("/customers/K1/activities", {
            "kind": "note", "note": "asked for a statement", "occurred_on": "2025-02-04"}), 201)
        await ok(dunning.post("/customers/K1/promises", {
            "promised_date": "2025-02-14", "amount": "600.00", "made_on": "2025-02-05"}), 201)
        await ok(dunning.post("/customers/K2/activities", {
            "kind": "email", "note": "reminder sent", "occurred_on": "2025-02-06"}), 201)
        await publisher.send(invoice_issued("K1", "K1-2", "500.00", issue="2025-02-10", due="2025-03-12"))
        await poll(lambda: dunning.view("K1"), lambda v: v is not None and len(v["invoices"]) == 2,
                   timeout=WAIT, what="K1-2 known to dunning")
        await ok(dunning.post("/runs", {"as_of": "2025-02-14"}))  # breaks K2's promise
        await publisher.send_all([
            payment_received("K1", "PK1", "600.00", received="2025-02-15", allocations=[("K1-1", "600.00")]),
            payment_received("K2", "PK2", "800.00", received="2025-02-20", allocations=[("K2-1", "800.00")]),
        ])
        await poll(lambda: dunning.view("K1"),
                   lambda v: v is not None and v["promises"][0]["status"] == "kept",
                   timeout=WAIT, what="K1's promise kept")

        alice = {
            "collector_id": "alice", "from": "2025-02-01", "to": "2025-02-28", "accounts": 1,
            "promises_made": 1, "promises_kept": 1, "promises_broken": 0, "kept_rate": "100.00",
            "plans_agreed": 0, "plans_completed": 0, "plans_broken": 0, "contacts": 1,
            "currencies": [{
                "currency": "EUR",
                "overdue_amount": "400.00",  # K1-1's 400.00 left (K1-2 is due 03-12)
                "collected_amount": "600.00",
                # AR at start 1000.00, sales 500.00, AR at end 900.00, of it current 500.00:
                # (1000 + 500 - 900) / (1000 + 500 - 500) = 60%; DSO 900 / 500 x 28 = 50.40,
                # best possible 500 / 500 x 28 = 28.00
                "cei": "60.00", "average_days_delinquent": "22.40"}],
        }
        bob = {
            **alice, "collector_id": "bob", "promises_made": 1, "promises_kept": 0, "promises_broken": 1,
            "kept_rate": "0.00", "contacts": 1,
            # AR at start 800.00, no sales, nothing left: CEI 100%; no DSO without sales
            "currencies": [{"currency": "EUR", "overdue_amount": "0.00", "collected_amount": "800.00",
                            "cei": "100.00", "average_days_delinquent": None}],
        }
        team = {
            **alice, "collector_id": None, "accounts": 2, "promises_made": 2, "promises_kept": 1,
            "promises_broken": 1, "kept_rate": "50.00", "contacts": 2,
            # (1800 + 500 - 900) / (1800 + 500 - 500) = 77.78%; DSO and best as alice's
            "currencies": [{"currency": "EUR", "overdue_amount": "400.00", "collected_amount": "1400.00",
                            "cei": "77.78", "average_days_delinquent": "22.40"}],
        }
        period = {"from": "2025-02-01", "to": "2025-02-28"}
        await poll(lambda: dunning.json("/collectors/alice/kpis", **period), lambda k: k == alice,
                   timeout=WAIT, what="alice's KPIs")
        assert await dunning.json("/collectors/bob/kpis", **period) == bob
        assert await dunning.json("/kpis", **period) == team
        march = await dunning.json("/kpis", **{"from": "2025-03-01", "to": "2025-03-31"})
        assert (march["promises_made"], march["contacts"], march["currencies"][0]["collected_amount"]) == (
            0, 0, "0.00")
        assert (await dunning.get("/collectors/nobody/kpis", **period)).status_code == 404
        backwards = await dunning.get("/kpis", **{"from": "2025-02-28", "to": "2025-02-01"})
        assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "query.to"

    # the service is stopped: the read models rebuilt from the event store are the same, row
    # for row (assignments, tasks, the KPIs' entries)
    assert replay_dunning(dunning_settings_for(dunning_broker.bootstrap, database_url), verify=True) == 0
