"""Payment plans and statements, the pure parts: what is paid of each instalment, when a run
breaks a plan or reminds of an instalment, what instalments are refused, and the statement
calendar (periods, statement days, confirmations every n months)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.dunning.domain.plans import Instalment, PaymentPlan, instalments_problem
from services.dunning.domain.statements import add_months, confirmation_due, on_statement_day, period

D = date.fromisoformat


def plan(*instalments: tuple[str, str], status: str = "active") -> PaymentPlan:
    return PaymentPlan("PL", "EUR", ("I1", "I2"), tuple(Instalment(D(d), Decimal(a)) for d, a in instalments),
                       D("2025-02-10"), "cash flow", "alice", status=status)


THREE = plan(("2025-03-01", "400.00"), ("2025-04-01", "400.00"), ("2025-05-01", "400.00"))


@pytest.mark.parametrize(("open_now", "unpaid"), [
    ("1200.00", ["400.00", "400.00", "400.00"]),
    ("1000.00", ["200.00", "400.00", "400.00"]),  # 200 paid: towards the first
    ("700.00", ["0.00", "300.00", "400.00"]),  # 500 paid: the first, and 100 of the second
    ("0.00", ["0.00", "0.00", "0.00"]),
])
def test_payments_count_towards_the_instalments_in_date_order(open_now: str, unpaid: list[str]) -> None:
    assert [THREE.unpaid(n, Decimal(open_now)) for n in (1, 2, 3)] == [Decimal(u) for u in unpaid]


def test_a_run_after_the_due_date_plus_the_grace_breaks_a_plan_on_its_first_unpaid_instalment() -> None:
    half_paid = Decimal("1000.00")  # 200 of the first instalment
    assert THREE.missed(D("2025-03-06"), 5, half_paid) is None  # 03-01 + 5: still in grace
    assert THREE.missed(D("2025-03-07"), 5, half_paid) == 1
    assert THREE.missed(D("2025-03-07"), 5, Decimal("800.00")) is None  # the first paid
    assert THREE.missed(D("2025-04-07"), 5, Decimal("800.00")) == 2
    assert THREE.missed(D("2025-04-07"), 0, Decimal("0.00")) is None


def test_reminders_go_out_from_n_days_before_each_due_date_once_and_not_when_paid() -> None:
    owed = Decimal("1200.00")
    assert THREE.reminders(D("2025-02-25"), 3, owed) == []
    assert THREE.reminders(D("2025-02-26"), 3, owed) == [1]
    assert THREE.reminders(D("2025-03-01"), 3, owed) == [1]  # a run on the due date still reminds
    assert THREE.reminders(D("2025-03-02"), 3, owed) == []
    assert THREE.reminders(D("2025-02-26"), 3, Decimal("800.00")) == []  # paid ahead
    reminded = plan(("2025-03-01", "400.00"), ("2025-04-01", "400.00"), ("2025-05-01", "400.00"))
    reminded.reminded.add(1)
    assert reminded.reminders(D("2025-02-27"), 3, owed) == []
    assert reminded.wake_date(5, 3, owed) == D("2025-03-07")  # reminded: next, breaking it
    assert THREE.wake_date(5, 3, owed) == D("2025-02-26")
    assert plan(("2025-03-01", "1.00"), status="requested").wake_date(5, 3, owed) is None


@pytest.mark.parametrize(("instalments", "problem"), [
    ([], "at least one instalment"),
    ([("2025-03-01", "0.00"), ("2025-04-01", "1200.00")], "positive amount"),
    ([("2025-04-01", "600.00"), ("2025-03-01", "600.00")], "date order"),
    ([("2025-02-01", "1200.00")], "before the plan is requested"),
    ([("2025-03-01", "600.00"), ("2025-04-01", "500.00")], "add up to 1100.00 EUR"),
])
def test_instalments_that_cannot_settle_the_covered_amount_are_refused(
    instalments: list[tuple[str, str]], problem: str
) -> None:
    found = instalments_problem([Instalment(D(d), Decimal(a)) for d, a in instalments], Decimal("1200.00"),
                                D("2025-02-10"), "EUR")
    assert found is not None and problem in found
    assert instalments_problem([Instalment(D("2025-03-01"), Decimal("1200.00"))], Decimal("1200.00"),
                               D("2025-02-10"), "EUR") is None


def test_the_statement_calendar() -> None:
    assert period(D("2024-04-01"), None) == (D("2024-03-01"), D("2024-03-31"))
    assert period(D("2024-03-15"), None) == (D("2024-02-01"), D("2024-02-29"))
    assert period(D("2024-03-15"), D("2024-03-01")) == (D("2024-03-01"), D("2024-03-15"))
    assert add_months(D("2024-01-31"), 1) == D("2024-02-29")
    assert add_months(D("2024-11-30"), 3) == D("2025-02-28")
    assert on_statement_day(None, D("2024-02-13"))
    assert on_statement_day(31, D("2024-02-29")) and not on_statement_day(31, D("2024-02-28"))
    assert on_statement_day(15, D("2024-02-15")) and not on_statement_day(15, D("2024-02-16"))
    assert confirmation_due(None, D("2024-04-01"), 3)
    assert not confirmation_due(D("2024-04-01"), D("2024-06-30"), 3)
    assert confirmation_due(D("2024-04-01"), D("2024-07-01"), 3)
    assert not confirmation_due(None, D("2024-04-01"), None)
