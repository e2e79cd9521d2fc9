"""Unit tests of the credit account: limits, exposure, holds, checks and reviews, figures by hand.

Facts reach the credit account the way the service will get them: ERP messages go through
the ledger's ``CustomerAccount`` and every stored ledger event is turned into its
``ar.ledger.events`` messages by ``services.ledger.outbound.translate``; the credit account
observes those (``tests.unit.ledger_feed_customer``). ``Customer.published`` collects what
``ar.credit.events`` would carry.

Default rules: hold over the limit, more than 60 days past due, or at grade E; reservations
last 30 days. 2025 is not a leap year: January 31 + 61 days = April 2.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.credit.domain import (
    ConflictingCheck,
    CreditAccount,
    CreditRules,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    LimitExceededRule,
    OverdueDaysRule,
    ReviewResult,
    UnknownHold,
    credit_hold_id,
    default_rules,
    published,
)
from shared.ledger_feed import Fact, read_fact
from tests.unit.ledger_feed_customer import LedgerFedCustomer, rebuilt_from

M = Decimal
D = date.fromisoformat


class Customer(LedgerFedCustomer):
    """One customer's ledger account feeding its credit account, as the services will."""

    def __init__(self, customer_id: str = "C1", rules: CreditRules | None = None, **profile: Any) -> None:
        self.rules = rules or default_rules()
        self.credit = CreditAccount(customer_id)
        self.history: list[Any] = list(self.credit.collect_events())
        self.published: list[tuple[str, dict[str, Any]]] = []
        super().__init__(customer_id, **profile)

    def observe(self, fact: Fact) -> None:
        self.credit.observe(fact, self.rules)

    def collect(self) -> list[Any]:
        new = list(self.credit.collect_events())
        self.history.extend(new)
        for stored in new:
            self.published.extend(published(stored))
        return new

    # credit side ---------------------------------------------------------------------------

    def check(self, order_id: str, amount: str, on: str, currency: str = "EUR") -> dict[str, Any]:
        answer = self.credit.check(order_id, M(amount), currency, D(on), self.rules)
        self.collect()
        return answer

    def review(self, day: str) -> ReviewResult:
        result = self.credit.review(D(day), self.rules)
        self.collect()
        return result

    def review_days(self, first: str, last: str) -> dict[str, ReviewResult]:
        """Daily reviews from ``first`` to ``last`` inclusive; those that recorded something, by date."""
        done = {}
        day = D(first)
        while day <= D(last):
            result = self.review(day.isoformat())
            if result:
                done[day.isoformat()] = result
            day += timedelta(days=1)
        return done

    def set_limit(self, currency: str, amount: str, by: str = "carol", **kw: Any) -> dict[str, Any]:
        position = self.credit.set_limit(currency, M(amount), by, rules=self.rules, **kw)
        self.collect()
        return position

    def hold(self, by: str, reason: str) -> dict[str, Any]:
        hold = self.credit.place_manual_hold(by, reason, self.rules)
        self.collect()
        return hold

    def release(self, hold_id: str, by: str, reason: str) -> dict[str, Any]:
        release = self.credit.release_hold(hold_id, by, reason, self.rules)
        self.collect()
        return release

    def types(self) -> list[str]:
        return [event_type for event_type, _ in self.published]

    def holds(self) -> list[tuple[str, list[str], str]]:
        """The active holds: (kind, reasons, placed by)."""
        return [(h.kind, list(h.reasons), h.placed_by) for h in self.credit.active_holds()]


def decision(answer: dict[str, Any]) -> tuple[Any, ...]:
    return (answer["decision"], answer["reasons"], answer["exposure"], answer["limit"],
            answer["available_credit"])


# --------------------------------------------------------------------------- the limit


def test_crossing_the_limit_places_a_hold_that_a_payment_releases() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "5000.00"})
    assert c.published == [("credit.limit_changed", {
        "customer_id": "C1", "currency": "EUR", "limit": "5000.00", "previous_limit": None,
        "changed_by": "erp:erp/eu-1", "change": "set", "expires_on": None, "review_on": None})]
    c.invoice("I1", "3000.00", "2025-03-01", "2025-03-31")
    # 3000 open + 1500 = 4500 <= 5000: approved and reserved
    assert decision(c.check("O1", "1500.00", "2025-03-02")) == (
        "approve", [], "3000.00", "5000.00", "2000.00")
    assert c.credit.exposure("EUR") == M("4500.00")
    # 4500 + 1000 = 5500 > 5000: a credit manager decides
    assert decision(c.check("O2", "1000.00", "2025-03-02")) == (
        "review", ["limit_exceeded"], "4500.00", "5000.00", "500.00")
    assert c.holds() == []
    # an invoice for no reserved order: 5500 open + 1500 reserved = 7000 > 5000
    c.invoice("I2", "2500.00", "2025-03-05", "2025-04-04")
    assert c.holds() == [("automatic", ["limit_exceeded"], "auto")]
    hold_id = credit_hold_id("C1", 1)
    placed = c.published[-1]
    assert placed == ("credit.hold_placed", {
        "customer_id": "C1", "hold_id": hold_id, "reasons": ["limit_exceeded"], "currency": "EUR",
        "exposure": "7000.00", "limit": "5000.00",
        "positions": [{"currency": "EUR", "open_receivables": "5500.00", "reserved": "1500.00",
                       "exposure": "7000.00", "limit": "5000.00", "available": "-2000.00"}],
        "placed_by": "auto", "note": None, "overdue_invoices": [], "risk_grade": None,
        "effective_date": "2025-03-05"})
    stored = c.history[-1]
    assert stored.hold["trigger"]["event_type"] == "ledger.invoice_opened"
    # on hold: every check answers hold, whatever the amount
    assert decision(c.check("O3", "1.00", "2025-03-06")) == (
        "hold", ["limit_exceeded"], "7000.00", "5000.00", "-2000.00")
    assert c.check("O3", "1.00", "2025-03-06")["hold_ids"] == [hold_id]
    # 2500 pays I1 (oldest due first): 3000 open + 1500 reserved = 4500 <= 5000
    c.pay("P1", "2500.00", "2025-03-20")
    assert c.holds() == []
    assert c.published[-1] == ("credit.hold_released", {
        "customer_id": "C1", "hold_id": hold_id, "released_by": "auto",
        "reason": "no hold rule applies any more (limit_exceeded cleared)", "reasons": ["limit_exceeded"],
        "positions": [{"currency": "EUR", "open_receivables": "3000.00", "reserved": "1500.00",
                       "exposure": "4500.00", "limit": "5000.00", "available": "500.00"}],
        "effective_date": "2025-03-20"})
    assert decision(c.check("O4", "500.00", "2025-03-21")) == ("approve", [], "4500.00", "5000.00", "500.00")


def test_without_a_limit_a_check_goes_to_review() -> None:
    c = Customer()
    c.invoice("I1", "100.00", "2025-03-01", "2025-03-31")
    assert decision(c.check("O1", "10.00", "2025-03-02")) == ("review", ["no_limit"], "100.00", None, None)
    assert c.credit.reservations == {}
    assert c.holds() == []  # no limit, nothing to exceed


def test_a_limit_set_over_rest_is_audited_and_not_undone_by_a_profile_resent() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "5000.00"})
    c.set_limit("EUR", "8000.00", by="carol", review_on=D("2025-06-30"))
    assert c.history[-1].limit["set_by"] == "carol" and c.history[-1].limit["previous"] == "5000.00"
    assert c.published[-1] == ("credit.limit_changed", {
        "customer_id": "C1", "currency": "EUR", "limit": "8000.00", "previous_limit": "5000.00",
        "changed_by": "carol", "change": "set", "expires_on": None, "review_on": "2025-06-30"})
    # the ERP re-sends the profile (a new phone number): the limit it carries has not changed
    events = c.profile(credit_limit={"currency": "EUR", "amount": "5000.00"}, country="DE")
    assert events == [] and c.credit.limit_amount("EUR") == M("8000.00")
    # the same PUT again records nothing
    c.set_limit("EUR", "8000.00", by="dave", review_on=D("2025-06-30"))
    assert type(c.history[-1]).__name__ == "LimitSet" and c.history[-1].limit["set_by"] == "carol"
    assert len([e for e in c.history if type(e).__name__ == "LimitSet"]) == 2
    # the ERP changes its limit: taken
    c.profile(credit_limit={"currency": "EUR", "amount": "6000.00"})
    assert c.credit.limit_amount("EUR") == M("6000.00")
    assert c.credit.limits["EUR"].source == "erp"


def test_lowering_the_limit_below_exposure_places_a_hold_and_raising_it_releases_it() -> None:
    c = Customer()
    c.invoice("I1", "800.00", "2025-03-01", "2025-03-31")
    c.set_limit("EUR", "500.00", by="carol")
    placed = c.history[-1]
    assert type(placed).__name__ == "HoldPlaced"
    hold = placed.hold
    assert (hold["reasons"], hold["trigger"], hold["exposure"], hold["limit"]) == (
        ["limit_exceeded"], {"kind": "limit_set", "by": "carol"}, "800.00", "500.00")
    c.set_limit("EUR", "800.00", by="dave")  # exposure equal to the limit is within it
    assert c.holds() == [] and c.history[-1].release["trigger"] == {"kind": "limit_set", "by": "dave"}


def test_limits_expire_and_come_up_for_review_in_the_daily_review() -> None:
    c = Customer()
    c.set_limit("EUR", "1000.00", expires_on=D("2025-03-31"), review_on=D("2025-03-15"))
    done = c.review_days("2025-03-01", "2025-04-05")
    assert {day: (r.limits_to_review, r.limits_expired) for day, r in done.items()} == {
        "2025-03-15": (["EUR"], []), "2025-04-01": ([], ["EUR"])}
    assert c.published[-2:] == [
        ("credit.limit_review_due", {"customer_id": "C1", "currency": "EUR", "review_on": "2025-03-15",
                                     "as_of": "2025-03-15"}),
        ("credit.limit_changed", {"customer_id": "C1", "currency": "EUR", "limit": None,
                                  "previous_limit": "1000.00", "changed_by": "auto", "change": "expired",
                                  "expires_on": "2025-03-31", "review_on": None, "as_of": "2025-04-01"}),
    ]
    assert c.check("O1", "10.00", "2025-04-02")["decision"] == "review"


def test_limits_and_commands_are_validated() -> None:
    c = Customer()
    with pytest.raises(InvalidAmount, match="decimal digits"):
        c.set_limit("EUR", "10.001")
    with pytest.raises(InvalidAmount, match="zero or more"):
        c.set_limit("EUR", "-1")
    with pytest.raises(InvalidCommand, match="ISO 4217"):
        c.set_limit("eur", "10")
    with pytest.raises(InvalidCommand, match="by"):
        c.set_limit("EUR", "10", by=" ")
    with pytest.raises(InvalidAmount, match="positive"):
        c.check("O1", "0", "2025-03-01")
    with pytest.raises(InvalidCommand, match="order_id"):
        c.check("", "1.00", "2025-03-01")
    assert c.credit.collect_events() == []


# --------------------------------------------------------------------------- overdue


def test_an_invoice_past_60_days_places_a_hold_in_the_daily_review_and_payment_releases_it() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "50000.00"})
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    done = c.review_days("2025-03-25", "2025-04-05")
    placed = {day: r.holds_placed for day, r in done.items() if r.holds_placed}
    assert list(placed) == ["2025-04-02"]  # 61 days past due
    hold = placed["2025-04-02"][0]
    assert (hold["reasons"], hold["exposure"], hold["limit"], hold["effective_date"]) == (
        ["overdue_days"], "1000.00", "50000.00", "2025-04-02")
    assert hold["overdue_invoices"] == [{"invoice_id": "I1", "currency": "EUR", "due_date": "2025-01-31",
                                        "days_past_due": 61, "open_amount": "1000.00"}]
    assert hold["trigger"] == {"kind": "review", "as_of": "2025-04-02"}
    # grade D meanwhile (76.94 on April 2), not E: only the overdue rule holds
    assert c.credit.grade == "D"
    assert c.check("O1", "10.00", "2025-04-03")["decision"] == "hold"
    # the same date again changes nothing
    before = len(c.history)
    assert not c.review("2025-04-05") and not c.review("2025-04-02")
    assert len(c.history) == before
    # part paid: still overdue
    c.pay("P1", "400.00", "2025-04-06")
    assert c.holds() == [("automatic", ["overdue_days"], "auto")]
    c.pay("P2", "600.00", "2025-04-07")
    assert c.holds() == []
    assert c.published[-1][1]["released_by"] == "auto"
    assert not c.review("2025-04-08").holds_placed


def test_a_fully_disputed_overdue_invoice_does_not_hold_but_counts_in_exposure() -> None:
    rules = CreditRules(hold_rules=(LimitExceededRule(), OverdueDaysRule()))
    c = Customer(rules=rules, credit_limit={"currency": "EUR", "amount": "1000.00"})
    c.invoice("I1", "800.00", "2025-01-01", "2025-01-31")
    c.send("dispute.opened", dispute_id="DS1", invoice_id="I1", amount="800.00", opened_date="2025-02-05",
           reason="damaged")
    assert c.credit.exposure("EUR") == M("800.00")
    assert not c.review("2025-04-02").holds_placed
    assert c.credit.overdue == {"I1": 61}  # marked, but disputed
    c.send("dispute.resolved", dispute_id="DS1", invoice_id="I1", outcome="rejected",
           resolved_date="2025-04-03")
    assert c.holds() == [("automatic", ["overdue_days"], "auto")]  # the mark counts again at once


# --------------------------------------------------------------------------- manual holds


def test_manual_hold_and_release_are_audited_with_who_and_why() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "5000.00"})
    hold = c.hold("alice", "suspected fraud, call first")
    assert (hold["kind"], hold["reasons"], hold["placed_by"], hold["note"]) == (
        "manual", ["manual"], "alice", "suspected fraud, call first")
    assert c.published[-1][0] == "credit.hold_placed"
    assert (c.published[-1][1]["reasons"], c.published[-1][1]["exposure"], c.published[-1][1]["limit"]) == (
        ["manual"], "0.00", "5000.00")
    assert c.hold("bob", "again") == hold  # one manual hold at a time
    assert decision(c.check("O1", "10.00", "2025-03-01")) == (
        "hold", ["manual"], "0.00", "5000.00", "5000.00")
    # a payment changes nothing: no rule released a manual hold
    c.invoice("I1", "100.00", "2025-03-01", "2025-03-31")
    c.pay("P1", "100.00", "2025-03-02")
    assert c.holds() == [("manual", ["manual"], "alice")]
    with pytest.raises(InvalidCommand, match="reason"):
        c.release(hold["hold_id"], "bob", "")
    release = c.release(hold["hold_id"], "bob", "customer verified")
    assert c.published[-1] == ("credit.hold_released", {
        "customer_id": "C1", "hold_id": hold["hold_id"], "released_by": "bob", "reason": "customer verified",
        "reasons": ["manual"], "positions": release["positions"], "effective_date": None})
    assert c.holds() == []
    with pytest.raises(HoldNotActive):
        c.release(hold["hold_id"], "bob", "twice")
    with pytest.raises(UnknownHold):
        c.release("nope", "bob", "why")
    assert c.check("O2", "10.00", "2025-03-03")["decision"] == "approve"


def test_releasing_an_automatic_hold_overrides_its_reason_until_it_clears() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "1000.00"})
    c.invoice("I1", "1200.00", "2025-03-01", "2025-03-31")
    first = c.credit.active_holds()[0]
    c.release(first.hold_id, "bob", "big order from a good customer, approved by the CFO")
    assert c.credit.overridden == {"limit_exceeded"}
    c.invoice("I2", "100.00", "2025-03-02", "2025-04-01")  # still over the limit: no new hold
    assert c.holds() == []
    assert c.check("O1", "10.00", "2025-03-03")["decision"] == "review"  # over the limit, not on hold
    c.pay("P1", "1000.00", "2025-03-10")  # 300 open: the reason stops holding, the override lapses
    assert c.credit.overridden == set() and type(c.history[-1]).__name__ == "OverridesLapsed"
    c.invoice("I3", "800.00", "2025-03-11", "2025-04-10")  # 1100 > 1000 again: a new hold
    assert c.holds() == [("automatic", ["limit_exceeded"], "auto")]
    assert c.credit.active_holds()[0].hold_id == credit_hold_id("C1", 2) != first.hold_id


# --------------------------------------------------------------------------- reservations


def test_reservations_count_expire_and_are_consumed_by_the_orders_invoice() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "10000.00"})
    answer = c.check("SO-1", "4000.00", "2025-03-01")
    assert (answer["decision"], answer["reserved_until"]) == ("approve", "2025-03-31")
    # the same order again: the same answer, reserved once
    assert c.check("SO-1", "4000.00", "2025-03-05") == answer
    assert c.credit.exposure("EUR") == M("4000.00")
    assert [type(e).__name__ for e in c.history].count("CreditChecked") == 1
    with pytest.raises(ConflictingCheck, match="SO-1"):
        c.check("SO-1", "4500.00", "2025-03-05")
    # the order's invoice (attributes.order_id) takes its place in exposure
    c.invoice("I1", "4000.00", "2025-03-10", "2025-04-09", attributes={"order_id": "SO-1"})
    assert (c.credit.items.receivables["EUR"], c.credit.reserved["EUR"], c.credit.reservations) == (
        M("4000.00"), M("0.00"), {})
    assert c.history[-1].consumed == [{"order_id": "SO-1", "amount": "4000.00", "remaining": "0.00"}]
    # 4000 + 3000 <= 10000; a first part invoice named by reference leaves 2000 reserved
    assert c.check("SO-2", "3000.00", "2025-03-10")["decision"] == "approve"
    c.invoice("I2", "1000.00", "2025-03-12", "2025-04-11", reference="SO-2")
    assert (c.credit.items.receivables["EUR"], c.credit.reserved["EUR"]) == (M("5000.00"), M("2000.00"))
    assert c.credit.exposure("EUR") == M("7000.00")
    # 7000 + 3001 > 10000
    assert decision(c.check("SO-3", "3001.00", "2025-03-12")) == (
        "review", ["limit_exceeded"], "7000.00", "10000.00", "3000.00")
    # SO-2 was checked on March 10: it counts through April 9 and is gone on April 10
    assert not c.review("2025-04-09").reservations_expired
    assert c.review("2025-04-10").reservations_expired == ["SO-2"]
    assert not c.review("2025-04-10")
    assert c.credit.exposure("EUR") == M("5000.00")
    # an invoice for an expired (or never reserved) order consumes nothing
    c.invoice("I3", "500.00", "2025-04-11", "2025-05-11", reference="SO-2")
    assert c.history[-1].consumed == [] and c.history[-1].invoice["order_id"] == "SO-2"
    assert c.check("SO-2", "3000.00", "2025-04-12")["decision"] == "approve"  # the answer stands


def test_a_reservation_in_another_currency_is_not_consumed() -> None:
    c = Customer()
    c.set_limit("USD", "5000.00")
    c.check("SO-9", "1000.00", "2025-03-01", currency="USD")
    c.invoice("I1", "1000.00", "2025-03-02", "2025-04-01", currency="EUR", attributes={"order_id": "SO-9"})
    assert c.credit.reserved["USD"] == M("1000.00")


# --------------------------------------------------------------------------- risk grade


def test_the_risk_grade_moves_with_payment_behaviour_and_its_factors_add_up() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "10000.00"})
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    c.pay("P1", "1000.00", "2025-01-31")
    first = c.review("2025-02-01").grade_change
    assert first is not None and (first["previous"], first["grade"], first["score"]) == (None, "A", "0.00")
    # I2 due March 3, unpaid on April 2: 30 days late, I1 on time, both weight 4
    c.invoice("I2", "1000.00", "2025-02-01", "2025-03-03")
    change = c.review("2025-04-02").grade_change
    assert change is not None
    factors = {f["name"]: f["contribution"] for f in change["factors"]}
    assert factors == {
        "weighted_days_late": "8.75",  # (0 + 4 x 30) / 8 = 15 -> 15 / 60 x 35
        "late_share": "12.50",  # 1 of 2
        "max_days_past_due": "8.33",  # 30 / 90 x 25
        "dispute_rate": "0.00",
        "trend": "0.00",  # nothing due more than 90 days ago
    }
    assert change["score"] == "29.58" == str(sum(M(v) for v in factors.values()))
    assert (change["previous"], change["grade"]) == ("A", "B")
    assert c.published[-2] == ("credit.risk_grade_changed", {
        "customer_id": "C1", "grade": "B", "previous_grade": "A", "score": "29.58",
        "factors": change["factors"], "as_of": "2025-04-02"})
    # and the same review raises the early warning of a worse grade
    kind, warning = c.published[-1]
    assert (kind, warning["signal"], warning["evidence"], warning["raised_on"]) == (
        "credit.warning_raised", "risk_grade_worse", {"grade": "B", "previous_grade": "A"}, "2025-04-02")
    assert not c.review("2025-04-03").grade_change  # 31 days: B still, nothing recorded


def test_grade_e_holds_until_a_review_grades_better() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "10000.00"})
    c.invoice("I1", "1000.00", "2025-01-01", "2025-01-31")
    # April 16: 75 days past due: 35 + 25 + 75 / 90 x 25 = 80.83 -> E; and past 60 days
    result = c.review("2025-04-16")
    assert result.grade_change is not None
    assert (result.grade_change["score"], c.credit.grade) == ("80.83", "E")
    assert c.holds() == [("automatic", ["overdue_days", "risk_grade"], "auto")]
    # paid: the overdue reason goes at once, the grade stays until the next review
    c.pay("P1", "1000.00", "2025-04-20")
    assert c.holds() == [("automatic", ["risk_grade"], "auto")]
    assert c.published[-1][0] == "credit.hold_reasons_changed"
    assert c.published[-1][1]["previous_reasons"] == ["overdue_days", "risk_grade"]
    # 79 days late, nothing open: 35 + 25 + 0 = 60.00 -> D; the hold goes
    result = c.review("2025-04-21")
    assert result.grade_change is not None and result.grade_change["score"] == "60.00"
    assert c.credit.grade == "D" and c.holds() == []
    assert result.holds_released[0]["reason"] == "no hold rule applies any more (risk_grade cleared)"


# --------------------------------------------------------------------------- currencies


def test_several_currencies_have_their_own_limit_and_exposure() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "1000.00"})
    c.set_limit("USD", "2000.00")
    c.invoice("E1", "900.00", "2025-03-01", "2025-03-31")
    c.invoice("U1", "1500.00", "2025-03-01", "2025-03-31", currency="USD")
    assert c.holds() == []
    assert decision(c.check("O1", "500.00", "2025-03-02", currency="USD")) == (
        "approve", [], "1500.00", "2000.00", "500.00")
    assert decision(c.check("O2", "200.00", "2025-03-02")) == ("review", ["limit_exceeded"], "900.00",
                                                                 "1000.00", "100.00")
    c.invoice("U2", "100.00", "2025-03-03", "2025-04-02", currency="USD")  # 1600 + 500 > 2000
    placed = c.published[-1][1]
    assert (placed["currency"], placed["exposure"], placed["limit"]) == ("USD", "2100.00", "2000.00")
    assert [p["currency"] for p in placed["positions"]] == ["EUR", "USD"]
    assert c.check("O3", "1.00", "2025-03-04", currency="GBP")["decision"] == "hold"  # the customer is held
    c.pay("PU", "100.00", "2025-03-05", currency="USD")
    assert c.holds() == []
    assert c.check("O4", "1.00", "2025-03-05", currency="GBP")["reasons"] == ["no_limit"]
    assert c.credit.view()["positions"] == [  # (no securities: nothing secured)
        {"currency": "EUR", "open_receivables": "900.00", "reserved": "0.00", "exposure": "900.00",
         "limit": "1000.00", "available": "100.00", "secured_amount": "0.00", "unsecured_exposure": "900.00"},
        {"currency": "USD", "open_receivables": "1500.00", "reserved": "500.00", "exposure": "2000.00",
         "limit": "2000.00", "available": "0.00", "secured_amount": "0.00", "unsecured_exposure": "2000.00"},
    ]


# --------------------------------------------------------------------------- redelivery, rebuilding


def test_a_ledger_event_delivered_twice_changes_nothing_the_second_time() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "1000.00"})
    c.invoice("I1", "1250.00", "2025-01-01", "2025-01-31")
    c.pay("P1", "500.00", "2025-01-10")
    c.send("dispute.opened", dispute_id="DS1", invoice_id="I1", amount="100.00", opened_date="2025-01-12",
           reason="short")
    before = c.credit.view()
    for fact in c.ledger_events:
        assert not c.credit.observe(fact, c.rules)
    profile = {"customer_id": "C1", "name": "Acme Ltd", "credit_limit": {"currency": "EUR", "amount": "1000"}}
    from_erp = read_fact("customer.upserted", profile, "m9", source="erp/eu-1")  # ar.customers: same limit
    assert c.credit.observe(from_erp) is False
    assert c.credit.collect_events() == []
    assert c.credit.view() == before
    assert c.credit.items.receivables["EUR"] == M("750.00")


def test_rebuilding_from_the_events_gives_the_same_state_and_payloads_are_json_native() -> None:
    c = Customer(credit_limit={"currency": "EUR", "amount": "3000.00"})
    c.set_limit("USD", "1000.00", expires_on=D("2025-05-31"), review_on=D("2025-04-30"))
    c.invoice("A", "1000.00", "2025-01-01", "2025-01-31")
    c.check("SO-1", "1500.00", "2025-01-05")
    c.check("SO-2", "600.00", "2025-01-06")
    c.invoice("B", "1200.00", "2025-01-15", "2025-02-14", attributes={"order_id": "SO-1"})
    c.invoice("U", "1200.00", "2025-01-10", "2025-02-09", currency="USD")  # over the USD limit
    c.send("dispute.opened", dispute_id="DS1", invoice_id="B", amount="200.00", opened_date="2025-02-20",
           reason="short")
    manual = c.hold("alice", "collections call")
    c.review_days("2025-02-01", "2025-03-31")
    c.pay("P1", "2500.00", "2025-04-01")  # 300 left over as unapplied cash
    c.send("payment.reversed", payment_id="P1", effective_date="2025-04-05", reason="bounced")
    c.release(manual["hold_id"], "bob", "call done")
    c.pay("PU", "1200.00", "2025-04-06", currency="USD")
    c.review_days("2025-04-01", "2025-06-30")
    names = {type(e).__name__ for e in c.history}
    assert names >= {"Opened", "LimitSet", "InvoiceOpened", "CreditChecked", "DisputeOpened", "HoldPlaced",
                     "HoldReleased", "ReservationsExpired", "OverdueMarked", "RiskGradeChanged",
                     "OpenAmountsChanged", "LimitExpired", "LimitReviewDue", "UnappliedCashChanged"}
    rebuilt = rebuilt_from(c.history)
    assert isinstance(rebuilt, CreditAccount)
    live = c.credit
    assert rebuilt.view(D("2025-06-30")) == live.view(D("2025-06-30"))
    assert (rebuilt.items.invoices, rebuilt.limits, rebuilt.reservations, rebuilt.checks, rebuilt.holds) == (
        live.items.invoices, live.limits, live.reservations, live.checks, live.holds)
    assert (rebuilt.items.receivables, rebuilt.reserved, rebuilt.items.unapplied, rebuilt.items.disputes) == (
        live.items.receivables, live.reserved, live.items.unapplied, live.items.disputes)
    assert (rebuilt.overdue, rebuilt.risk, rebuilt.overridden, rebuilt.erp_limit) == (
        live.overdue, live.risk, live.overridden, live.erp_limit)
    assert (rebuilt.last_review_on, rebuilt.items.sequence, rebuilt.version) == (
        live.last_review_on, live.items.sequence, live.version)
