"""The collections forecast (issue 20): the chance of being paid by a day rises through the
predicted p10, p50 and p90 dates; weeks add up to at most what is open."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.ledger.predictions.forecast import forecast, paid_by
from services.ledger.predictions.predict import Prediction

AS_OF = date(2025, 3, 5)  # a Wednesday


def predicted(due_in: int, p10: int, p50: int, p90: int) -> Prediction:
    due = AS_OF + timedelta(days=due_in)
    return Prediction("I", AS_OF, due, due + timedelta(days=p50), p10, p90, 0.5, "v", ())


def test_the_chance_of_being_paid_by_a_day() -> None:
    """Due in 5 days; p10 on time (day 5), p50 10 days late (day 15), p90 30 late (day 35)."""
    p = predicted(5, 0, 10, 30)
    chances = [paid_by(p, AS_OF + timedelta(days=d)) for d in (-1, 5, 10, 15, 35, 55)]
    assert chances == pytest.approx([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])  # day 10: halfway from 0.1 to 0.5


def test_the_weeks_never_exceed_the_open_amount() -> None:
    items = [(predicted(5, 0, 10, 30), Decimal("1000.00")), (predicted(-20, 25, 40, 80), Decimal("333.33"))]
    weeks = forecast(items, AS_OF, 20, "EUR")
    assert weeks[0].week_start == date(2025, 3, 3)  # the Monday
    total = sum((w.expected for w in weeks), Decimal(0))
    assert Decimal("1333.13") <= total <= Decimal("1333.33")  # each of the 20 weeks rounded down to the cent
    assert all(w.low <= w.expected <= w.high for w in weeks)
    assert sum((w.expected for w in forecast(items, AS_OF, 2, "EUR")), Decimal(0)) < total
