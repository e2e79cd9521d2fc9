"""Unit tests of the dunning account: a customer's notices over time, dates worked out by hand.

Facts reach the dunning account the way the service will get them: ERP messages go
through the ledger's ``CustomerAccount`` and every stored ledger event is turned into its
``ar.ledger.events`` messages by ``services.ledger.outbound.translate``; the dunning account
observes those (``tests.unit.ledger_feed_customer``). Runs are daily unless a test says
otherwise; ``Customer.run_days`` returns the notices by date.

Default policy: courtesy reminder at -3 days (min 0 days since the last notice, min amount
0), first notice at 7 (7 days, 10.00), second at 21 (14, 10.00, fee 5.00), phone call at 35
(14, 50.00, fee 10.00), final demand at 60 (14, 100.00, fee 15.00), hand-off at 90 (14,
250.00, escalates). 2025 is not a leap year: January 31 + 28 days = February 28.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from services.dunning.domain import DunningAccount, Policy, RunResult, default_policy, notice_id
from services.dunning.domain.errors import (
    AlreadyPromised,
    CurrencyMismatch,
    InvalidPromise,
    InvoiceNotOpen,
    UnknownInvoice,
)
from shared.ledger_feed import Fact, read_fact
from tests.unit.ledger_feed_customer import LedgerFedCustomer, rebuilt_from

M = Decimal
D = date.fromisoformat


class Customer(LedgerFedCustomer):
    """One customer's ledger account feeding its dunning account, as the services will."""

    profile_defaults: ClassVar[dict[str, Any]] = {"name": "Acme Ltd", "country": "GB"}

    def __init__(self, customer_id: str = "C1", policy: Policy | None = None, **profile: Any) -> None:
        self.policy = policy or default_policy()
        self.dunning = DunningAccount(customer_id)
        self.history: list[Any] = list(self.dunning.collect_events())
        self.notices: dict[str, list[dict[str, Any]]] = {}
        super().__init__(customer_id, **profile)

    def observe(self, fact: Fact) -> None:
        self.dunning.observe(fact)

    def collect(self) -> None:
        self.history.extend(self.dunning.collect_events())

    # dunning side --------------------------------------------------------------------------

    def run(self, day: str, policy: Policy | None = None) -> RunResult:
        result = self.dunning.run(D(day), policy or self.policy)
        self.collect()
        if result.notices:
            self.notices[day] = result.notices
        return result

    def run_days(self, first: str, last: str) -> dict[str, list[dict[str, Any]]]:
        """Daily runs from ``first`` to ``last`` inclusive; the notices issued, by date."""
        issued = {}
        day = D(first)
        while day <= D(last):
            result = self.run(day.isoformat())
            if result.notices:
                issued[day.isoformat()] = result.notices
            day += timedelta(days=1)
        return issued

    def promise(self, made_on: str, promised: str, amount: str, **kw: Any) -> dict[str, Any]:
        promise = self.dunning.promise(made_on=D(made_on), promised_date=D(promised), amount=M(amount),
                                       policy=self.policy, **kw)
        self.collect()
        return promise


def summary(issued: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Per date: (currency, level, [(invoice, open amount, days past due, its level)], total due)."""
    return {
        day: [(n["currency"], n["level"],
               [(i["invoice_id"], i["open_amount"], i["days_past_due"], i["level"]) for i in n["invoices"]],
               n["total_due"]) for n in notices]
        for day, notices in issued.items()
    }


def levels_by_date(issued: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {day: notices[0]["level"] for day, notices in issued.items()}


# --------------------------------------------------------------------------- a customer's life


def test_the_default_policy_over_120_days_of_daily_runs() -> None:
    c = Customer()
    c.invoice("I1", "1250.00", "2025-01-01", "2025-01-31")
    wake_before: dict[str, Any] = {}
    issued: dict[str, list[dict[str, Any]]] = {}
    day = D("2025-01-01")
    while day <= D("2025-05-31"):  # 150 daily runs: nothing after the hand-off
        wake_before[day.isoformat()] = c.dunning.wake_date(c.policy)
        result = c.run(day.isoformat())
        if result.notices:
            issued[day.isoformat()] = result.notices
        day += timedelta(days=1)
    assert summary(issued) == {
        "2025-01-28": [("EUR", 1, [("I1", "1250.00", -3, 1)], "1250.00")],  # due - 3
        "2025-02-07": [("EUR", 2, [("I1", "1250.00", 7, 2)], "1250.00")],  # due + 7
        "2025-02-21": [("EUR", 3, [("I1", "1250.00", 21, 3)], "1255.00")],  # + 21, fee 5.00
        "2025-03-07": [("EUR", 4, [("I1", "1250.00", 35, 4)], "1260.00")],  # + 28 + 7, fee 10.00
        "2025-04-01": [("EUR", 5, [("I1", "1250.00", 60, 5)], "1265.00")],  # + 28 + 31 + 1, fee 15.00
        "2025-05-01": [("EUR", 6, [("I1", "1250.00", 90, 6)], "1250.00")],  # + 28 + 31 + 30 + 1
    }
    notices = [n for day in issued.values() for n in day]
    assert [(n["level_name"], n["channels"], n["fees"], n["respond_by"], n["escalate"]) for n in notices] == [
        ("courtesy_reminder", ["email"], "0.00", "2025-02-11", False),
        ("first_notice", ["email"], "0.00", "2025-02-21", False),
        ("second_notice", ["email", "letter"], "5.00", "2025-03-07", False),
        ("phone_call", ["phone_task"], "10.00", "2025-03-21", False),
        ("final_demand", ["letter"], "15.00", "2025-04-11", False),  # respond within 10 days
        ("collections_handoff", ["letter"], "0.00", "2025-05-15", True),
    ]
    assert notices[-1]["escalated_invoices"] == ["I1"]
    assert [n["notice_id"] for n in notices] == [str(notice_id("C1", D(day), "EUR")) for day in issued]
    # the contract's fields, all of them
    assert set(notices[0]) >= {"notice_id", "customer_id", "level", "channel", "template", "invoices",
                               "total_due", "currency", "fees", "respond_by"}
    assert (notices[2]["channel"], notices[2]["template"], notices[2]["customer_id"]) == (
        "email", "second_notice", "C1")
    # the wake date is exactly the next notice date: a pre-filter on it misses nothing
    assert {day for day, wake in wake_before.items() if wake == D(day)} == set(issued)
    assert c.dunning.wake_date(c.policy) is None  # escalated: nothing pending
    assert c.dunning.marks("I1").escalated


def test_notices_are_not_sent_before_the_wake_date() -> None:
    c = Customer()
    c.invoice("I1", "1250.00", "2025-01-01", "2025-01-31")
    assert c.dunning.wake_date(c.policy) == D("2025-01-28")
    assert c.run_days("2025-01-01", "2025-01-27") == {}
    c.run("2025-01-28")
    assert c.dunning.wake_date(c.policy) == D("2025-02-07")


# --------------------------------------------------------------------------- grouping


def test_one_notice_per_run_at_the_highest_level_listing_every_invoice_at_or_below_it() -> None:
    c = Customer()
    c.invoice("A", "100.00", "2025-01-01", "2025-01-31")
    c.invoice("B", "200.00", "2025-01-15", "2025-02-14")
    issued = c.run_days("2025-01-01", "2025-03-21")
    assert summary(issued) == {
        "2025-01-28": [("EUR", 1, [("A", "100.00", -3, 1)], "100.00")],
        "2025-02-07": [("EUR", 2, [("A", "100.00", 7, 2)], "100.00")],  # B not yet at any level
        # B's courtesy reminder is due from February 11, but A is at level 2 already: the
        # customer's level does not go down, so B waits for a level-2 notice (7 days after
        # the last) and goes out on it at its own level 1, beside A (not advanced)
        "2025-02-14": [("EUR", 2, [("A", "100.00", 14, 2), ("B", "200.00", 0, 1)], "300.00")],
        # A is due level 3 (day 21) but the last notice was 7 days ago, level 3 needs 14:
        # the notice falls back to level 2, B's; A is listed at its level 2, not advanced
        "2025-02-21": [("EUR", 2, [("A", "100.00", 21, 2), ("B", "200.00", 7, 2)], "300.00")],
        # 14 days later both reach level 3 together: one notice, one fee
        "2025-03-07": [("EUR", 3, [("A", "100.00", 35, 3), ("B", "200.00", 21, 3)], "305.00")],
        "2025-03-21": [("EUR", 4, [("A", "100.00", 49, 4), ("B", "200.00", 35, 4)], "310.00")],
    }
    notice = issued["2025-02-21"][0]
    assert notice["advanced"] == {"B": 2}


def test_the_notice_level_never_goes_down_while_an_invoice_stays_higher() -> None:
    # invoices at levels 2 and 0: when the second comes due, one level-2 notice lists both
    c = Customer()
    c.invoice("OLD", "300.00", "2025-01-01", "2025-01-31")
    assert levels_by_date(c.run_days("2025-01-01", "2025-02-07")) == {"2025-01-28": 1, "2025-02-07": 2}
    c.invoice("NEW", "50.00", "2025-01-21", "2025-02-20")  # its courtesy reminder from February 17
    issued = c.run_days("2025-02-08", "2025-02-20")
    assert summary(issued) == {
        "2025-02-17": [("EUR", 2, [("OLD", "300.00", 17, 2), ("NEW", "50.00", -3, 1)], "350.00")],
    }
    assert issued["2025-02-17"][0]["advanced"] == {"NEW": 1}


def test_a_level_never_repeats_for_an_invoice() -> None:
    c = Customer()
    c.invoice("A", "100.00", "2025-01-01", "2025-01-31")
    c.invoice("B", "200.00", "2025-01-15", "2025-02-14")
    c.invoice("C", "400.00", "2025-02-01", "2025-03-03")
    c.run_days("2025-01-01", "2025-02-20")
    c.dispute("D1", "B", "200.00", "2025-02-20")
    c.run_days("2025-02-21", "2025-03-20")
    c.resolve("D1", "B", "rejected", "2025-03-20")
    c.pay("P1", "250.00", "2025-04-02")
    c.run_days("2025-03-21", "2025-07-31")
    advanced: dict[str, list[int]] = {}
    for notices in c.notices.values():
        for notice in notices:
            for invoice_id, level in notice["advanced"].items():
                advanced.setdefault(invoice_id, []).append(level)
    assert set(advanced) == {"A", "B", "C"}
    for levels in advanced.values():
        assert levels == sorted(set(levels))  # strictly ascending: no level twice
    assert all(n["level"] == max(i["level"] for i in n["invoices"]) for ns in c.notices.values() for n in ns)


def test_a_rerun_of_the_same_date_issues_nothing() -> None:
    c = Customer()
    c.invoice("I1", "1250.00", "2025-01-01", "2025-01-31")
    first = c.run("2025-02-07")
    assert [n["level"] for n in first.notices] == [2]
    events_before = len(c.history)
    assert not c.run("2025-02-07")
    assert not c.run("2025-02-01")  # runs only go forward
    assert len(c.history) == events_before
    # the notice id is the same however often the date is run elsewhere (replays dedupe)
    assert first.notices[0]["notice_id"] == str(notice_id("C1", D("2025-02-07"), "EUR"))


def test_a_ledger_event_delivered_twice_changes_nothing_the_second_time() -> None:
    c = Customer()
    c.invoice("I1", "1250.00", "2025-01-01", "2025-01-31")
    c.pay("P1", "250.00", "2025-01-10")
    before = c.dunning.view()
    for fact in c.ledger_events:
        assert not c.dunning.observe(fact)
    assert c.dunning.collect_events() == []
    assert c.dunning.view() == before
    assert c.dunning.items.invoices["I1"].open_amount == M("1000.00")


# --------------------------------------------------------------------------- conditions


def test_min_days_since_the_last_notice_holds_a_level_back() -> None:
    policy = Policy.model_validate({"name": "spaced", "levels": [
        {"name": "one", "days_past_due": 1, "channel": "email", "template": "first_notice"},
        {"name": "two", "days_past_due": 3, "channel": "letter", "template": "second_notice",
         "min_days_since_last_notice": 5},
    ]})
    c = Customer(policy=policy)
    c.invoice("I1", "500.00", "2025-01-01", "2025-01-31")
    # level 2 is reached on Feb 3 but waits until 5 days after Feb 1
    assert levels_by_date(c.run_days("2025-01-01", "2025-02-28")) == {"2025-02-01": 1, "2025-02-06": 2}


def test_min_amount_holds_a_notice_back_until_the_total_reaches_it() -> None:
    c = Customer()
    c.invoice("I1", "8.00", "2025-01-01", "2025-01-31")
    c.invoice("I2", "5.00", "2025-02-01", "2025-03-03")
    assert summary(c.run_days("2025-01-01", "2025-03-31")) == {
        "2025-01-28": [("EUR", 1, [("I1", "8.00", -3, 1)], "8.00")],  # the courtesy level has no minimum
        # I1 reaches level 2 on Feb 7 but 8.00 < 10.00; with I2's courtesy reminder due the
        # notice's total is 13.00
        "2025-02-28": [("EUR", 2, [("I1", "8.00", 28, 2), ("I2", "5.00", -3, 1)], "13.00")],
        # I2 reaches level 2; I1's level 3 needs 14 days since Feb 28, so it is listed at 2
        "2025-03-10": [("EUR", 2, [("I1", "8.00", 38, 2), ("I2", "5.00", 7, 2)], "13.00")],
        "2025-03-24": [("EUR", 3, [("I1", "8.00", 52, 3), ("I2", "5.00", 21, 3)], "18.00")],
    }


def test_a_small_debt_is_not_handed_to_collections() -> None:
    c = Customer()
    c.invoice("I1", "200.00", "2025-01-01", "2025-01-31")
    issued = c.run_days("2025-01-01", "2025-07-31")
    assert levels_by_date(issued) == {"2025-01-28": 1, "2025-02-07": 2, "2025-02-21": 3, "2025-03-07": 4,
                                      "2025-04-01": 5}  # hand-off needs 250.00
    assert not c.dunning.marks("I1").escalated


# --------------------------------------------------------------------------- disputes


def test_a_fully_disputed_invoice_drops_out_and_a_rejected_dispute_resumes_where_it_was() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-09")
    c.dispute("D1", "I1", "1000.00", "2025-02-10")
    assert c.run_days("2025-02-10", "2025-03-30") == {}
    assert c.dunning.wake_date(c.policy) is None
    c.resolve("D1", "I1", "rejected", "2025-03-31")
    c.run_days("2025-03-31", "2025-04-20")
    # after level 2 comes level 3, although the invoice is 59 days overdue by then
    assert levels_by_date(c.notices) == {"2025-01-28": 1, "2025-02-07": 2, "2025-03-31": 3, "2025-04-14": 4}


def test_only_the_undisputed_part_is_dunned() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.dispute("D1", "I1", "400.00", "2025-02-01")
    issued = c.run_days("2025-01-01", "2025-02-07")
    assert summary(issued)["2025-02-07"] == [("EUR", 2, [("I1", "600.00", 7, 2)], "600.00")]
    view = c.dunning.view()["invoices"][0]
    assert (view["open_amount"], view["disputed_amount"]) == ("1000.00", "400.00")
    # accepted with a credit of 400.00: the ledger credits it, 600.00 stays open and dunned
    c.resolve("D1", "I1", "accepted", "2025-02-10", credited_amount="400.00")
    issued = c.run_days("2025-02-08", "2025-02-21")
    assert summary(issued) == {"2025-02-21": [("EUR", 3, [("I1", "600.00", 21, 3)], "605.00")]}


def test_a_dispute_that_arrives_before_its_invoice_applies_when_the_invoice_does() -> None:
    c = Customer()
    c.dispute("D1", "I1", "1000.00", "2025-01-02")
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    assert c.run_days("2025-01-01", "2025-03-31") == {}


# --------------------------------------------------------------------------- promises to pay


def test_a_kept_promise_pauses_dunning_and_payment_ends_it() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-25")  # levels 1, 2, 3 (Feb 21)
    promise = c.promise("2025-02-25", "2025-03-10", "1000.00")
    assert (promise["invoice_ids"], promise["paused_until"], promise["status"]) == (
        ["I1"], "2025-03-13", "open")  # promised date + 3 days' grace
    assert c.run_days("2025-02-26", "2025-03-09") == {}  # level 4 was due on Mar 7
    c.pay("P1", "1000.00", "2025-03-10")
    assert c.dunning.promises[promise["promise_id"]].status == "kept"
    assert c.dunning.promises[promise["promise_id"]].closed_on == D("2025-03-10")
    assert c.run_days("2025-03-10", "2025-06-30") == {}


def test_a_partly_paid_promise_kept_lets_the_rest_resume_with_the_open_amount() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-25")
    c.promise("2025-02-25", "2025-03-10", "400.00")
    c.run_days("2025-02-26", "2025-03-09")
    c.pay("P1", "400.00", "2025-03-10")
    issued = c.run_days("2025-03-10", "2025-03-31")
    # kept on Mar 10, the pause ends; level 4 (due since Mar 7) goes out with what is left
    assert summary(issued) == {"2025-03-10": [("EUR", 4, [("I1", "600.00", 38, 4)], "610.00")]}


def test_a_broken_promise_resumes_dunning_at_the_next_level() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-25")
    promise = c.promise("2025-02-25", "2025-03-10", "1000.00")
    c.pay("P1", "500.00", "2025-03-12")  # half, within the grace: not kept
    assert c.run_days("2025-02-26", "2025-03-13") == {}  # paused through Mar 13 inclusive
    result = c.run("2025-03-14")
    assert result.broken_promises == [promise["promise_id"]]
    assert summary({"2025-03-14": result.notices}) == {
        "2025-03-14": [("EUR", 4, [("I1", "500.00", 42, 4)], "510.00")]}
    assert c.dunning.promises[promise["promise_id"]].status == "broken"
    assert levels_by_date(c.run_days("2025-03-15", "2025-04-30")) == {"2025-04-01": 5}


def test_a_payment_after_the_grace_does_not_keep_the_promise() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-25")
    promise = c.promise("2025-02-25", "2025-03-10", "1000.00")
    c.run_days("2025-02-26", "2025-03-13")
    c.pay("P1", "1000.00", "2025-03-20")  # known before the next run, effective too late
    result = c.run("2025-03-21")
    assert result.broken_promises == [promise["promise_id"]]
    assert result.notices == []  # but nothing is left to dun


def test_a_promise_covers_the_oldest_invoices_until_the_amount_and_others_stay_dunned() -> None:
    c = Customer()
    c.invoice("A", "400.00", "2025-01-01", "2025-01-31")
    c.invoice("B", "300.00", "2025-01-15", "2025-02-14")
    c.invoice("C", "500.00", "2025-02-01", "2025-03-03")
    c.run_days("2025-01-01", "2025-02-24")
    promise = c.promise("2025-02-24", "2025-03-31", "600.00")
    assert promise["invoice_ids"] == ["A", "B"]  # 400.00 + 300.00 >= 600.00
    issued = c.run_days("2025-02-25", "2025-03-31")
    assert {i["invoice_id"] for notices in issued.values() for n in notices for i in n["invoices"]} == {"C"}


def test_promises_that_cannot_be_made_are_refused() -> None:
    c = Customer()
    c.invoice("A", "400.00", "2025-01-01", "2025-01-31")
    c.invoice("U", "100.00", "2025-01-01", "2025-01-31", currency="USD")
    c.pay("P1", "400.00", "2025-02-01")
    c.invoice("B", "300.00", "2025-01-15", "2025-02-14")
    with pytest.raises(InvalidPromise, match="positive"):
        c.promise("2025-02-20", "2025-03-01", "0")
    with pytest.raises(InvalidPromise, match="before"):
        c.promise("2025-02-20", "2025-02-19", "100.00", currency="EUR")
    with pytest.raises(InvalidPromise, match="name the currency"):
        c.promise("2025-02-20", "2025-03-01", "100.00")
    with pytest.raises(InvalidPromise, match=r"exceeds the open amount 300\.00"):
        c.promise("2025-02-20", "2025-03-01", "300.01", invoice_ids=["B"])
    with pytest.raises(UnknownInvoice):
        c.promise("2025-02-20", "2025-03-01", "100.00", invoice_ids=["X"])
    with pytest.raises(InvoiceNotOpen):
        c.promise("2025-02-20", "2025-03-01", "100.00", invoice_ids=["A"])
    with pytest.raises(CurrencyMismatch):
        c.promise("2025-02-20", "2025-03-01", "100.00", invoice_ids=["B", "U"])
    first = c.promise("2025-02-20", "2025-03-01", "100.00", invoice_ids=["B"])
    events = len(c.history)
    assert c.promise("2025-02-20", "2025-03-01", "100.00", invoice_ids=["B"]) == first  # same promise again
    assert len(c.history) == events
    with pytest.raises(AlreadyPromised):
        c.promise("2025-02-21", "2025-03-05", "50.00", invoice_ids=["B"])


# --------------------------------------------------------------------------- payments


def test_a_partial_payment_leaves_the_rest_in_dunning_and_full_payment_stops_it() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-14")
    c.pay("P1", "300.00", "2025-02-15")
    issued = c.run_days("2025-02-15", "2025-03-01")
    assert summary(issued) == {"2025-02-21": [("EUR", 3, [("I1", "700.00", 21, 3)], "705.00")]}
    c.pay("P2", "700.00", "2025-03-02")
    assert c.run_days("2025-03-02", "2025-06-30") == {}
    assert c.dunning.wake_date(c.policy) is None


def test_a_reversed_payment_reopens_the_invoice_for_dunning() -> None:
    c = Customer()
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.run_days("2025-01-01", "2025-02-10")
    c.pay("P1", "1000.00", "2025-02-11")
    assert c.run_days("2025-02-11", "2025-02-27") == {}
    c.send("payment.reversed", payment_id="P1", effective_date="2025-02-28", reason="bounced")
    assert levels_by_date(c.run_days("2025-02-28", "2025-03-10")) == {"2025-02-28": 3}


# --------------------------------------------------------------------------- customers


def test_do_not_dun_is_honoured_and_lifting_it_resumes_at_the_first_overdue_level() -> None:
    c = Customer(do_not_dun=True)
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    assert c.run_days("2025-01-01", "2025-02-28") == {}
    assert c.dunning.wake_date(c.policy) is None
    c.profile(do_not_dun=False)
    # overdue 29 days and never dunned: the courtesy reminder is skipped, level 2 comes first
    assert levels_by_date(c.run_days("2025-03-01", "2025-03-31")) == {"2025-03-01": 2, "2025-03-15": 3,
                                                                         "2025-03-29": 4}


def test_a_profile_from_ar_customers_counts_like_the_ledgers() -> None:
    dunning = DunningAccount("C9")
    profile = {"customer_id": "C9", "name": "Nine", "dunning_policy": "strict", "do_not_dun": True}
    assert dunning.observe(read_fact("customer.upserted", profile, "m1", source="erp/x"))
    assert (dunning.policy_name, dunning.do_not_dun) == ("strict", True)
    ledgers = {**profile, "origin": {"source": "erp/x", "id": "m1", "type": "customer.upserted"}}
    assert not dunning.observe(read_fact("ledger.customer_updated", ledgers, "ledger:x:1:0"))


def test_each_customer_is_dunned_by_its_own_policy() -> None:
    strict = Policy.model_validate({"name": "strict", "version": 2, "levels": [
        {"name": "notice", "days_past_due": 1, "channel": "email", "template": "first_notice"},
        {"name": "handoff", "days_past_due": 10, "channel": "letter", "template": "collections_handoff",
         "escalate": True},
    ]})
    c = Customer(dunning_policy="strict")
    assert c.dunning.policy_name == "strict"
    assert Customer("C2").dunning.policy_name == "default"
    c.policy = strict  # the service looks the policy up by the name the account gives
    c.invoice("I1", "100.00", "2025-01-01", "2025-01-31")
    issued = c.run_days("2025-01-01", "2025-03-31")
    assert [(d, n[0]["level"], n[0]["policy"], n[0]["policy_version"], n[0]["escalate"])
            for d, n in issued.items()] == [
        ("2025-02-01", 1, "strict", 2, False), ("2025-02-10", 2, "strict", 2, True)]


def test_several_currencies_get_one_notice_each_per_run() -> None:
    c = Customer()
    c.invoice("E1", "100.00", "2025-01-01", "2025-01-31")
    c.invoice("U1", "250.00", "2025-01-01", "2025-01-31", currency="USD")
    c.invoice("U2", "50.00", "2025-01-05", "2025-02-07", currency="USD")
    issued = c.run_days("2025-01-28", "2025-02-11")
    # each currency has its own levels and its own days since the last notice
    assert summary(issued) == {
        "2025-01-28": [("EUR", 1, [("E1", "100.00", -3, 1)], "100.00"),
                       ("USD", 1, [("U1", "250.00", -3, 1)], "250.00")],
        "2025-02-04": [("USD", 1, [("U1", "250.00", 4, 1), ("U2", "50.00", -3, 1)], "300.00")],
        "2025-02-07": [("EUR", 2, [("E1", "100.00", 7, 2)], "100.00")],  # USD: 3 days since Feb 4
        "2025-02-11": [("USD", 2, [("U1", "250.00", 11, 2), ("U2", "50.00", 4, 1)], "300.00")],
    }
    ids = {n["notice_id"] for n in issued["2025-01-28"]}
    assert ids == {str(notice_id("C1", D("2025-01-28"), "EUR")), str(notice_id("C1", D("2025-01-28"), "USD"))}


def test_interest_is_shown_on_the_notice_per_invoice_when_the_policy_asks() -> None:
    c = Customer(policy=default_policy().model_copy(update={"annual_interest_percent": M("9.12")}))
    c.invoice("A", "1000.00", "2025-01-01", "2025-01-31")
    c.invoice("B", "500.00", "2025-01-15", "2025-02-14")
    notice = c.run_days("2025-01-01", "2025-03-07")["2025-03-07"][0]
    # A: 1000.00 x 9.12% / 365 x 35 = 8.7452... -> 8.75; B: 500.00 x 9.12% / 365 x 21 = 2.6235... -> 2.62
    assert [(i["invoice_id"], i["interest"]) for i in notice["invoices"]] == [("A", "8.75"), ("B", "2.62")]
    assert (notice["open_total"], notice["fees"], notice["interest"], notice["total_due"]) == (
        "1500.00", "5.00", "11.37", "1516.37")


# --------------------------------------------------------------------------- rebuilding


def test_rebuilding_from_the_events_gives_the_same_state() -> None:
    c = Customer(language="de")
    c.invoice("A", "400.00", "2025-01-01", "2025-01-31")
    c.invoice("B", "300.00", "2025-01-15", "2025-02-14")
    c.invoice("U", "900.00", "2025-01-10", "2025-02-09", currency="USD")
    c.run_days("2025-01-01", "2025-02-20")
    c.dispute("D1", "B", "100.00", "2025-02-20")
    c.promise("2025-02-21", "2025-03-01", "200.00", currency="USD")
    c.pay("P1", "150.00", "2025-02-25")
    c.run_days("2025-02-21", "2025-03-20")
    c.resolve("D1", "B", "rejected", "2025-03-20")
    c.run_days("2025-03-21", "2025-06-30")
    assert c.notices and any(n["escalate"] for ns in c.notices.values() for n in ns)
    rebuilt = rebuilt_from(c.history)
    assert isinstance(rebuilt, DunningAccount)
    live = c.dunning
    assert rebuilt.view() == live.view()
    assert (rebuilt.items.invoices, rebuilt.dunned) == (live.items.invoices, live.dunned)
    assert rebuilt.promises == live.promises
    assert (rebuilt.items.disputes, rebuilt.items.dispute_invoice, rebuilt.items.open_ids) == (
        live.items.disputes, live.items.dispute_invoice, live.items.open_ids)
    assert rebuilt.profile == live.profile
    assert (rebuilt.last_notice_on, rebuilt.last_run_on, rebuilt.items.sequence, rebuilt.version) == (
        live.last_notice_on, live.last_run_on, live.items.sequence, live.version)
    assert rebuilt.wake_date(c.policy) == live.wake_date(c.policy)
