"""Statement runs and balance confirmations end to end: the month worked out by hand in
``test_ledger_statement`` goes through Kafka to the ledger and on to dunning, whose statement
run publishes the ledger's figures; on SQLite and PostgreSQL.

By hand, for March 2024 (the calendar month before a run of 1 April):

- S: opening 1,000.00 (I1, issued in February); closing 850.00: I1 500.00 (1,000 - P1 300 -
  P3 200) and I2 350.00 (500 - the credit note 100 - the write-off 50) open, nothing
  unapplied. I9 (2 April) is after the period. Its policy asks for a confirmation every 3
  months: the statements of 1 April and 1 July ask, 1 May's does not.
- U: paid 75.00 on account on 12 March with nothing to pay: opening 0.00, closing -75.00,
  unapplied 75.00; its (default) policy asks for no confirmation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from shared.broker import EmbeddedBroker
from tests.integration.dunning_harness import (
    ACTIONS_TOPIC,
    InProcessDunning,
    dunning_settings_for,
    profile,
)
from tests.integration.feed_harness import published_once
from tests.integration.ledger_books import march_statement_book
from tests.integration.ledger_harness import InProcessLedger, Publisher, ledger_settings, poll, read_topic

WAIT = 30.0


def open_amounts(view: dict[str, Any] | None) -> dict[str, str]:
    return {} if view is None else {i["invoice_id"]: i["open_amount"] for i in view["invoices"]}


# what dunning shows of S (and whether U is known) once each part of the book went through
SEEN = [
    lambda s, u: open_amounts(s) == {"I1": "1000.00", "I3": "1000.00", "I2": "500.00"},
    lambda s, u: open_amounts(s) == {"I1": "700.00", "I2": "500.00"},  # I3 paid (with its discount)
    lambda s, u: open_amounts(s) == {"I1": "700.00", "I2": "350.00"},
    lambda s, u: open_amounts(s) == {"I1": "700.00", "I2": "350.00", "I9": "10.00"},
    lambda s, u: open_amounts(s) == {"I1": "500.00", "I2": "350.00", "I9": "10.00"} and u is not None,
]


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def figures(statement: dict[str, Any]) -> tuple[Any, ...]:
    return (statement["customer_id"], statement["currency"], statement["period_from"], statement["period_to"],
            statement["opening_balance"], statement["closing_balance"], statement["unapplied_cash"],
            [(i["invoice_id"], i["open_amount"]) for i in statement["open_items"]],
            statement["confirmation_requested"])


async def test_a_statement_run_publishes_the_ledgers_figures_once_and_answers_are_recorded(
    dunning_broker: EmbeddedBroker, database_url: str
) -> None:
    bootstrap = dunning_broker.bootstrap
    async with InProcessLedger(ledger_settings(bootstrap, database_url)) as ledger, \
            InProcessDunning(dunning_settings_for(bootstrap, database_url)) as dunning, \
            Publisher(bootstrap) as publisher:
        default = await dunning.json("/policies/default")
        audited = {k: v for k, v in default.items() if k not in ("name", "version")}
        stored = await ok(await dunning.put("/policies/audited", {**audited, "confirm_balance_every": 3}))
        assert stored["confirm_balance_every"] == 3
        await publisher.send(profile("S", event_id="p-S", dunning_policy="audited", language="en"))
        for (_, messages), seen in zip(march_statement_book(), SEEN, strict=True):
            await publisher.send_all(messages)
            await poll(lambda: _views(dunning), lambda views, seen=seen: seen(*views), timeout=WAIT,
                       what=f"dunning has seen {[m['id'] for m in messages]}")

        april = await ok(await dunning.post("/statement-runs", {"as_of": "2024-04-01"}))
        assert (april["period_from"], april["period_to"], april["repeat"]) == (
            "2024-03-01", "2024-03-31", False)
        by_customer = {s["customer_id"]: s for s in april["statements"]}
        assert figures(by_customer["S"]) == (
            "S", "EUR", "2024-03-01", "2024-03-31", "1000.00", "850.00", "0.00",
            [("I1", "500.00"), ("I2", "350.00")], True)
        assert figures(by_customer["U"]) == (
            "U", "EUR", "2024-03-01", "2024-03-31", "0.00", "-75.00", "75.00", [], False)
        assert "Please confirm this balance of 850.00 EUR" in by_customer["S"]["text"]
        # the ledger's own statement of the month (once its read models have it all): the same figures
        for customer, statement in by_customer.items():
            (ledgers,) = await poll(
                lambda c=customer: _ledger_statement(ledger, c),
                lambda found, s=statement: found and found[0]["closing_balance"] == s["closing_balance"],
                timeout=WAIT, what=f"the ledger's statement of {customer}")
            assert (ledgers["opening_balance"], ledgers["closing_balance"], ledgers["unapplied_cash"]) == (
                statement["opening_balance"], statement["closing_balance"], statement["unapplied_cash"])
            moved = sum(Decimal(x["debit"]) - Decimal(x["credit"]) for x in ledgers["lines"])
            assert Decimal(ledgers["opening_balance"]) + moved == Decimal(statement["closing_balance"])

        # the same date again: the same statements, nothing new sent
        again = await ok(await dunning.post("/statement-runs", {"as_of": "2024-04-01"}))
        assert again["repeat"] is True
        assert sorted(map(figures, again["statements"])) == sorted(map(figures, april["statements"]))

        # the answers: U confirms; S disputes, seeing 800.00
        refused = await dunning.post("/customers/S/confirmations", {
            "statement_id": by_customer["S"]["statement_id"], "response": "disputed", "note": "no",
            "responded_on": "2024-04-03"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.balance"
        unknown = await dunning.post("/customers/S/confirmations", {
            "statement_id": by_customer["U"]["statement_id"], "response": "confirmed",
            "responded_on": "2024-04-03"})
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "body.statement_id"
        confirmed = await ok(await dunning.post("/customers/U/confirmations", {
            "statement_id": by_customer["U"]["statement_id"], "response": "confirmed", "note": "",
            "responded_on": "2024-04-02"}), 201)
        assert (confirmed["balance"], confirmed["difference"]) == ("-75.00", "0.00")
        disputed = await ok(await dunning.post("/customers/S/confirmations", {
            "statement_id": by_customer["S"]["statement_id"], "response": "disputed", "balance": "800.00",
            "note": "we paid 50.00 more on 28 March", "responded_on": "2024-04-03"}), 201)
        assert (disputed["statement_balance"], disputed["balance"], disputed["difference"]) == (
            "850.00", "800.00", "-50.00")
        timeline = await dunning.json("/customers/S/timeline")
        dated = [e["kind"] for e in timeline if e["at"] < "2025-01-01"]  # (a profile is dated when recorded)
        assert dated[0] == "balance_disputed" and "statement" in dated, dated
        row = await poll(lambda: _worklist_row(dunning, "S"), lambda r: r and r["balance_disputed_on"],
                         timeout=WAIT, what="S's disputed balance on the worklist")
        assert row["balance_disputed_on"] == "2024-04-03"
        listed = await dunning.json("/customers/S/statements")
        assert listed["statements"][0]["response"]["response"] == "disputed"

        # confirmation every 3 months: May does not ask, July does
        may = await ok(await dunning.post("/statement-runs", {"as_of": "2024-05-01"}))
        (may_s,) = [s for s in may["statements"] if s["customer_id"] == "S"]
        assert figures(may_s) == ("S", "EUR", "2024-04-01", "2024-04-30", "850.00", "860.00", "0.00",
                                  [("I1", "500.00"), ("I2", "350.00"), ("I9", "10.00")], False)
        july = await ok(await dunning.post("/statement-runs", {"as_of": "2024-07-01"}))
        assert [s["confirmation_requested"] for s in july["statements"] if s["customer_id"] == "S"] == [True]

        records = await read_topic(bootstrap, ACTIONS_TOPIC, timeout=WAIT, until=lambda rs: sum(
            orjson.loads(r.value)["type"].startswith("dunning.balance_") for r in rs) >= 2)
    published = published_once(records)
    issued = [m["data"] for m in published if m["type"] == "dunning.statement_issued"]
    april_issued = sorted(figures(s) for s in issued if s["as_of"] == "2024-04-01")
    assert april_issued == sorted(map(figures, april["statements"]))  # once, though run twice
    answers = sorted((m["type"], m["data"]["customer_id"], m["data"]["balance"]) for m in published
                     if m["type"].startswith("dunning.balance_"))
    assert answers == [("dunning.balance_confirmed", "U", "-75.00"),
                       ("dunning.balance_disputed", "S", "800.00")]


async def _views(dunning: InProcessDunning) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    return await dunning.view("S"), await dunning.view("U")


async def _worklist_row(dunning: InProcessDunning, customer: str) -> dict[str, Any] | None:
    worklist = await dunning.json("/worklist", as_of="2024-04-05")
    return next((r for r in worklist["customers"] if r["customer_id"] == customer), None)


async def _ledger_statement(ledger: InProcessLedger, customer: str) -> list[dict[str, Any]] | None:
    march = {"from": "2024-03-01", "to": "2024-03-31"}
    response = await ledger.get(f"/customers/{customer}/statement", **march)
    return response.json()["currencies"] if response.status_code == 200 else None
