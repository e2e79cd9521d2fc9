"""The dunning service end to end: ERP events → ledger → ar.ledger.events → dunning → REST and
ar.dunning.actions, through the real embedded broker, on SQLite and PostgreSQL.

Seven customers live through 121 days (2025-01-01 to 2025-05-01) of daily ``POST /runs``
under the default policy (courtesy reminder at -3 days, notices at 7, 21 and 35 days
(fees 5.00 and 10.00 at 21 and 35), final demand at 60 (fee 15.00), hand-off at 90; 14 days
between notices from level 3 on; see tests/unit/test_dunning_account.py for the rules), and
one under a policy of its own stored with ``PUT /policies``. Every notice date, level,
invoice, amount and total below is worked out by hand. 2025 is not a leap year.

Nothing waits a fixed time: every wait polls a condition with a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from services.dunning.replay import replay_dunning
from shared.broker import EmbeddedBroker
from tests.integration.dunning_harness import (
    ACTIONS_TOPIC,
    InProcessDunning,
    dispute_resolved,
    dunning_settings_for,
    profile,
)
from tests.integration.feed_harness import (
    dead_letter_reasons,
    feed_bad_and_twice,
    h_messages,
    published_once,
)
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    dispute_opened,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
    read_topic,
)

WAIT = 30.0


STRICT = {
    "description": "one notice the day after due, collections ten days later",
    "levels": [
        {"name": "notice", "days_past_due": 1, "channel": "email", "template": "first_notice"},
        {"name": "handoff", "days_past_due": 10, "channel": "letter", "template": "collections_handoff",
         "escalate": True},
    ],
}

# A: the plain life of one invoice. B: two invoices grouped on one notice, then paid.
# C: a promise broken (half paid within the grace). D: a promise kept. E: a dispute that
# holds dunning back until it is rejected. F: do-not-dun, lifted on March 1. G: its own policy.
START = [
    profile("A", event_id="p-A"), profile("B", event_id="p-B"), profile("C", event_id="p-C"),
    profile("D", event_id="p-D"), profile("E", event_id="p-E"),
    profile("F", event_id="p-F1", do_not_dun=True), profile("G", event_id="p-G", dunning_policy="strict"),
    invoice_issued("A", "A-1", "1250.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("B", "B-1", "100.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("B", "B-2", "200.00", issue="2025-01-15", due="2025-02-14"),
    invoice_issued("C", "C-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("D", "D-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("E", "E-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("F", "F-1", "1000.00", issue="2025-01-01", due="2025-01-31"),
    invoice_issued("G", "G-1", "100.00", issue="2025-01-01", due="2025-01-31"),
]


def _invoice(view: dict[str, Any] | None, invoice_id: str) -> dict[str, Any] | None:
    if view is None:
        return None
    return next((i for i in view["invoices"] if i["invoice_id"] == invoice_id), None)


# Facts published before the run of a date, each with what the dunning view shows once
# the ledger's events about it have arrived.
Check = Callable[[dict[str, Any] | None], bool]
FACTS: dict[str, list[tuple[dict[str, Any], str, Check]]] = {
    "2025-02-10": [(dispute_opened("E", "DE-1", "E-1", "1000.00", opened="2025-02-10"), "E",
                    lambda v: (_invoice(v, "E-1") or {}).get("disputed_amount") == "1000.00")],
    "2025-03-01": [(profile("F", event_id="p-F2", do_not_dun=False), "F",
                    lambda v: v is not None and v["do_not_dun"] is False)],
    "2025-03-10": [(payment_received("D", "PD-1", "1000.00", received="2025-03-10"), "D",
                    lambda v: v is not None and v["promises"][0]["status"] == "kept")],
    "2025-03-12": [(payment_received("C", "PC-1", "500.00", received="2025-03-12"), "C",
                    lambda v: (_invoice(v, "C-1") or {}).get("open_amount") == "500.00")],
    "2025-03-25": [(payment_received("B", "PB-1", "300.00", received="2025-03-25"), "B",
                    lambda v: v is not None and all(i["open_amount"] == "0.00" for i in v["invoices"]))],
    "2025-03-31": [(dispute_resolved("E", "DE-1", "E-1", "rejected", "2025-03-31"), "E",
                    lambda v: (_invoice(v, "E-1") or {}).get("disputed_amount") == "0.00")],
}

# (customer, date) -> (level, [(invoice, open amount, days past due)], total due)
EXPECTED: dict[tuple[str, str], tuple[int, list[tuple[str, str, int]], str]] = {
    ("A", "2025-01-28"): (1, [("A-1", "1250.00", -3)], "1250.00"),
    ("A", "2025-02-07"): (2, [("A-1", "1250.00", 7)], "1250.00"),
    ("A", "2025-02-21"): (3, [("A-1", "1250.00", 21)], "1255.00"),
    ("A", "2025-03-07"): (4, [("A-1", "1250.00", 35)], "1260.00"),
    ("A", "2025-04-01"): (5, [("A-1", "1250.00", 60)], "1265.00"),
    ("A", "2025-05-01"): (6, [("A-1", "1250.00", 90)], "1250.00"),
    ("B", "2025-01-28"): (1, [("B-1", "100.00", -3)], "100.00"),
    ("B", "2025-02-07"): (2, [("B-1", "100.00", 7)], "100.00"),
    # B-2's courtesy reminder is due from 02-11, but B-1 is at level 2: the customer's level
    # does not go down, so it goes out on a level-2 notice once level 2's 7 days have passed
    ("B", "2025-02-14"): (2, [("B-1", "100.00", 14), ("B-2", "200.00", 0)], "300.00"),
    # B-1 is due level 3 but 7 days after a notice: one level-2 notice for both
    ("B", "2025-02-21"): (2, [("B-1", "100.00", 21), ("B-2", "200.00", 7)], "300.00"),
    ("B", "2025-03-07"): (3, [("B-1", "100.00", 35), ("B-2", "200.00", 21)], "305.00"),
    ("B", "2025-03-21"): (4, [("B-1", "100.00", 49), ("B-2", "200.00", 35)], "310.00"),
    ("C", "2025-01-28"): (1, [("C-1", "1000.00", -3)], "1000.00"),
    ("C", "2025-02-07"): (2, [("C-1", "1000.00", 7)], "1000.00"),
    ("C", "2025-02-21"): (3, [("C-1", "1000.00", 21)], "1005.00"),
    # promised on 02-25 for 03-10, paused to 03-13; half paid: broken on 03-14, next level
    ("C", "2025-03-14"): (4, [("C-1", "500.00", 42)], "510.00"),
    ("C", "2025-04-01"): (5, [("C-1", "500.00", 60)], "515.00"),
    ("C", "2025-05-01"): (6, [("C-1", "500.00", 90)], "500.00"),
    ("D", "2025-01-28"): (1, [("D-1", "1000.00", -3)], "1000.00"),
    ("D", "2025-02-07"): (2, [("D-1", "1000.00", 7)], "1000.00"),
    ("D", "2025-02-21"): (3, [("D-1", "1000.00", 21)], "1005.00"),
    ("E", "2025-01-28"): (1, [("E-1", "1000.00", -3)], "1000.00"),
    ("E", "2025-02-07"): (2, [("E-1", "1000.00", 7)], "1000.00"),
    # disputed from 02-10 to 03-31: resumes at level 3, then 14 days apart
    ("E", "2025-03-31"): (3, [("E-1", "1000.00", 59)], "1005.00"),
    ("E", "2025-04-14"): (4, [("E-1", "1000.00", 73)], "1010.00"),
    ("E", "2025-04-28"): (5, [("E-1", "1000.00", 87)], "1015.00"),
    # do-not-dun until 03-01: the courtesy reminder is skipped once overdue
    ("F", "2025-03-01"): (2, [("F-1", "1000.00", 29)], "1000.00"),
    ("F", "2025-03-15"): (3, [("F-1", "1000.00", 43)], "1005.00"),
    ("F", "2025-03-29"): (4, [("F-1", "1000.00", 57)], "1010.00"),
    ("F", "2025-04-12"): (5, [("F-1", "1000.00", 71)], "1015.00"),
    ("F", "2025-05-01"): (6, [("F-1", "1000.00", 90)], "1000.00"),
    ("G", "2025-02-01"): (1, [("G-1", "100.00", 1)], "100.00"),
    ("G", "2025-02-10"): (2, [("G-1", "100.00", 10)], "100.00"),
}
ESCALATED = {("A", "2025-05-01"), ("C", "2025-05-01"), ("F", "2025-05-01"), ("G", "2025-02-10")}
CONTRACT_FIELDS = {"notice_id", "customer_id", "level", "channel", "template", "invoices", "total_due",
                   "currency", "fees", "respond_by"}


async def wait_view(dunning: InProcessDunning, customer: str, check: Check, what: str) -> None:
    await poll(lambda: dunning.view(customer), check, timeout=WAIT, what=what)


async def expect_status(call: Awaitable[Any], status: int) -> Any:
    response = await call
    assert response.status_code == status, response.text
    return response.json()


async def test_customers_lives_over_120_days_of_daily_runs(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    settings = dunning_settings_for(dunning_broker.bootstrap, database_url)
    issued: dict[str, list[dict[str, Any]]] = {}
    async with InProcessLedger(ledger_settings(dunning_broker.bootstrap, database_url)), \
            InProcessDunning(settings) as dunning, Publisher(dunning_broker.bootstrap) as publisher:
        # policies: stored, versioned (a change bumps the version, the same content does not)
        first = await expect_status(dunning.put("/policies/strict", {**STRICT, "description": "draft"}), 200)
        second = await expect_status(dunning.put("/policies/strict", STRICT), 200)
        again = await expect_status(dunning.put("/policies/strict", {**STRICT, "version": 7}), 200)
        assert (first["version"], second["version"], again["version"]) == (1, 2, 2)
        assert second["levels"][1]["channel"] == "letter" and second["levels"][1]["escalate"]
        policies = (await dunning.json("/policies"))["policies"]
        assert [(p["name"], p["version"]) for p in policies] == [("default", 1), ("strict", 2)]
        bad = await dunning.put("/policies/bad", {"levels": [
            {**STRICT["levels"][0], "days_past_due": 5}, {**STRICT["levels"][1], "days_past_due": 5}]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("body"), bad.text
        bad = await dunning.put("/policies/bad", {"levels": [{**STRICT["levels"][0], "fee": 1.5}]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.levels[0].fee", bad.text

        await publisher.send_all(START)
        for customer, invoice_id in [("A", "A-1"), ("B", "B-2"), ("C", "C-1"), ("D", "D-1"),
                                     ("E", "E-1"), ("F", "F-1"), ("G", "G-1")]:
            await wait_view(dunning, customer, lambda v, i=invoice_id: _invoice(v, i) is not None,
                            f"{invoice_id} known to dunning")
        await wait_view(dunning, "G", lambda v: v is not None and v["policy_version"] == 2, "G's policy")
        await wait_view(dunning, "F", lambda v: v is not None and v["do_not_dun"], "F's do-not-dun")

        day = date(2025, 1, 1)
        while day <= date(2025, 5, 1):
            today = day.isoformat()
            for event, customer, check in FACTS.get(today, []):
                await publisher.send(event)
                await wait_view(dunning, customer, check, f"{event['type']} of {today} seen by dunning")
            if today == "2025-02-25":
                for customer, amount in (("C", "1000.00"), ("D", "1000.00")):
                    promise = await expect_status(dunning.post(f"/customers/{customer}/promises", {
                        "promised_date": "2025-03-10", "amount": amount, "made_on": today}), 201)
                    assert (promise["invoice_ids"], promise["paused_until"]) == (
                        [f"{customer}-1"], "2025-03-13")
                refused = await dunning.post("/customers/C/promises",
                                             {"promised_date": "2025-03-10", "amount": 100.0})
                assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.amount"
                refused = await dunning.post("/customers/D/promises", {
                    "promised_date": "2025-03-11", "amount": "10.00", "made_on": today,
                    "invoice_ids": ["D-1"]})
                assert refused.status_code == 409, refused.text  # D-1 is already promised
            run = await expect_status(dunning.post("/runs", {"as_of": today}), 200)
            assert (run["as_of"], run["repeat"]) == (today, False)
            if run["notices"]:
                issued[today] = run["notices"]
            day += timedelta(days=1)

        notices = [n for day_notices in issued.values() for n in day_notices]
        assert {(n["customer_id"], n["as_of"]): (
            n["level"], [(i["invoice_id"], i["open_amount"], i["days_past_due"]) for i in n["invoices"]],
            n["total_due"]) for n in notices} == EXPECTED
        assert len(notices) == len(EXPECTED)  # one notice per customer and date
        assert {(n["customer_id"], n["as_of"]) for n in notices if n["escalate"]} == ESCALATED
        assert all(set(n) >= CONTRACT_FIELDS for n in notices)
        a_notices = [n for n in notices if n["customer_id"] == "A"]
        assert [(n["channel"], n["template"], n["fees"]) for n in a_notices] == [
            ("email", "courtesy_reminder", "0.00"), ("email", "first_notice", "0.00"),
            ("email", "second_notice", "5.00"), ("phone_task", "phone_call", "10.00"),
            ("letter", "final_demand", "15.00"), ("letter", "collections_handoff", "0.00")]
        assert [(n["policy"], n["policy_version"]) for n in notices if n["customer_id"] == "G"] == [
            ("strict", 2), ("strict", 2)]

        # a date run again answers the same notices and issues nothing; earlier dates are refused
        rerun = await expect_status(dunning.post("/runs", {"as_of": "2025-05-01"}), 200)
        assert rerun["repeat"] and rerun["run_id"] == run["run_id"]
        assert rerun["notices"] == issued["2025-05-01"]
        late = await expect_status(dunning.post("/runs", {"as_of": "2024-12-31"}), 409)
        assert late["errors"][0]["field"] == "body.as_of"

        # the read side: a customer's state, notices by level and status, the worklist
        c_view = await dunning.view("C")
        assert c_view is not None
        assert [(p["status"], p["closed_on"]) for p in c_view["promises"]] == [("broken", "2025-03-14")]
        assert _invoice(c_view, "C-1") == {**_invoice(c_view, "C-1"), "level": 6, "escalated": True}
        finals = (await dunning.json("/notices", level=6))["notices"]
        assert sorted(n["customer_id"] for n in finals) == ["A", "C", "F"]
        assert {n["status"] for n in finals} == {"outstanding"}
        settled = (await dunning.json("/notices", customer_id="B", status="settled"))["notices"]
        assert len(settled) == 6
        assert (await dunning.json("/notices", customer_id="B", status="outstanding"))["notices"] == []
        of_day = (await dunning.json("/notices", as_of="2025-03-14"))["notices"]
        assert [n["customer_id"] for n in of_day] == ["C"]
        worklist = (await dunning.json("/worklist", as_of="2025-05-02"))["customers"]
        # amount at risk = overdue undisputed open amount x (1 + level)
        assert [(w["customer_id"], w["amount_at_risk"], w["level"]) for w in worklist] == [
            ("A", "8750.00", 6), ("F", "7000.00", 6), ("E", "6000.00", 5), ("C", "3500.00", 6),
            ("G", "300.00", 2)]
        metrics = await dunning.metrics()
        assert metrics["receivables_messages_processed_total"] > 0
        assert metrics.get("receivables_messages_deadlettered_total", 0) == 0

        # ar.dunning.actions: every notice exactly as served, keyed by customer, deduped on id
        records = await read_topic(
            dunning_broker.bootstrap, ACTIONS_TOPIC, timeout=WAIT,
            until=lambda rs: len({orjson.loads(r.value)["id"] for r in rs}) >= len(EXPECTED) + 4 + 2 + 2)
    published = published_once(records)
    assert {e["source"] for e in published} == {"receivables/dunning"}
    notice_events = {e["data"]["notice_id"]: e["data"] for e in published
                     if e["type"] == "dunning.notice_issued"}
    assert notice_events == {n["notice_id"]: n for n in notices}
    escalations = [e["data"] for e in published if e["type"] == "dunning.escalated"]
    assert sorted((e["customer_id"], e["as_of"], [i["invoice_id"] for i in e["invoices"]], e["open_amount"])
                  for e in escalations) == [("A", "2025-05-01", ["A-1"], "1250.00"),
                                            ("C", "2025-05-01", ["C-1"], "500.00"),
                                            ("F", "2025-05-01", ["F-1"], "1000.00"),
                                            ("G", "2025-02-10", ["G-1"], "100.00")]
    paused = sorted((e["data"]["customer_id"], e["data"]["paused_until"]) for e in published
                    if e["type"] == "dunning.paused")
    assert paused == [("C", "2025-03-13"), ("D", "2025-03-13")]
    resumed = sorted((e["data"]["customer_id"], e["data"]["reason"]) for e in published
                     if e["type"] == "dunning.resumed")
    assert resumed == [("C", "promise_broken"), ("D", "promise_kept")]

    # the service is stopped: a rebuild of the read models from the event store is identical
    assert replay_dunning(settings, verify=True) == 0


async def test_bad_ledger_messages_are_dead_lettered_and_repeats_change_nothing(
    dunning_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Driven with ar.ledger.events messages built by the ledger's own outbound translation."""
    messages = h_messages()
    settings = dunning_settings_for(dunning_broker.bootstrap, f"sqlite:///{tmp_path / 'test.db'}")
    async with InProcessDunning(settings) as dunning, Publisher(dunning_broker.bootstrap) as publisher:
        await feed_bad_and_twice(publisher, [(b"X", messages[0][1])], messages)  # X: not the customer
        await wait_view(dunning, "H", lambda v: (_invoice(v, "H-1") or {}).get("open_amount") == "250.00",
                        "H-1 with the payment applied")
        metrics = await dunning.wait_metric("receivables_messages_deadlettered_total", 3, timeout=WAIT)
        assert metrics["receivables_messages_deadlettered_total"] == 3
        reasons = await dead_letter_reasons(dunning_broker.bootstrap, 3, timeout=WAIT)
        assert any("not JSON" in r for r in reasons)
        assert any("data.currency" in r for r in reasons)
        assert any(r.startswith("key:") for r in reasons)
        view = await dunning.view("H")
        assert view is not None and len(view["invoices"]) == 1
        run = await expect_status(dunning.post("/runs", {"as_of": "2025-02-07"}), 200)
        assert [(n["level"], n["total_due"]) for n in run["notices"]] == [(2, "250.00")]
