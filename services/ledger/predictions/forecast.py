"""The collections forecast: how much of what is open on a date comes in each of the next weeks.

Each open invoice's predicted pay date is a distribution: through its p10, p50 and p90 dates
the chance of being paid by a day rises linearly (0 on the day asked, 0.1 at p10, 0.5 at p50,
0.9 at p90, 1 as far past p90 as p90 is past p50). A week's ``expected`` is the sum of each
invoice's open amount times its chance of being paid in that week; so the weeks never add up
to more than the open total (each week rounded down to the cent). ``low`` and ``high`` are
that sum less and plus 1.28 standard deviations (the invoices taken as independent: an 80%
band), never below zero nor above what could come that week. Weeks start on ``as_of``'s Monday.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from itertools import pairwise

from services.ledger.predictions.predict import Prediction
from shared.money import ZERO, quantum

BAND = 1.2816  # the normal's 90th percentile: low and high bound an 80% band


@dataclass(frozen=True, slots=True)
class Week:
    week_start: date
    expected: Decimal
    low: Decimal
    high: Decimal


def paid_by(prediction: Prediction, day: date) -> float:
    """The chance the invoice is paid by the end of ``day`` (see the module's docstring)."""
    return _chance(_curve(prediction), day)


def _curve(prediction: Prediction) -> list[tuple[date, float]]:
    """The days through which the chance of being paid rises linearly, and the chance on each."""
    start = prediction.as_of
    due = prediction.due_date
    p10 = max(start, due + timedelta(days=prediction.p10_days_late))
    p50 = max(p10, prediction.predicted_pay_date)
    p90 = max(p50, due + timedelta(days=prediction.p90_days_late))
    last = p90 + max(p90 - p50, timedelta(days=1))
    return [(start - timedelta(days=1), 0.0), (p10, 0.1), (p50, 0.5), (p90, 0.9), (last, 1.0)]


def _chance(points: list[tuple[date, float]], day: date) -> float:
    for (d0, f0), (d1, f1) in pairwise(points):
        if day <= d1:
            if d1 <= d0:
                return f1
            return f0 + (f1 - f0) * max(0, (day - d0).days) / (d1 - d0).days
    return 1.0


def forecast(open_items: Iterable[tuple[Prediction, Decimal]], as_of: date, weeks: int,
             currency: str) -> list[Week]:
    """``weeks`` weeks from ``as_of``'s Monday of the (prediction, open amount) pairs of one
    currency. Money stays decimal: each invoice's share of a week is its amount times the
    chance, and a week's sum is rounded down to the cent, so the weeks never exceed what is open."""
    monday = as_of - timedelta(days=as_of.weekday())
    starts = [monday + timedelta(days=7 * n) for n in range(weeks)]
    cent = quantum(currency)
    expected, variance, reachable = [ZERO] * weeks, [0.0] * weeks, [ZERO] * weeks
    # invoice by invoice, its curve once and its chance by the end of each week (a week's chance:
    # by its end less by the end of the week before; the first week's from the day asked)
    for prediction, amount in open_items:
        points, before, square = _curve(prediction), 0.0, float(amount) ** 2
        for n, start in enumerate(starts):
            by_end = _chance(points, start + timedelta(days=6))
            chance = max(0.0, by_end - before)
            before = by_end
            if chance > 0:
                expected[n] += amount * Decimal(chance)
                variance[n] += square * chance * (1 - chance)
                reachable[n] += amount
    found = []
    for n, start in enumerate(starts):
        spread = Decimal(repr(BAND * math.sqrt(variance[n])))
        found.append(Week(start, expected[n].quantize(cent, rounding=ROUND_DOWN),
                          max(ZERO, expected[n] - spread).quantize(cent, rounding=ROUND_DOWN),
                          min(reachable[n], expected[n] + spread).quantize(cent, rounding=ROUND_DOWN)))
    return found
