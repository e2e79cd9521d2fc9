"""A payment prediction for one invoice on a business date, as known at an instant.

An invoice still open on ``as_of`` is paid on or after it: every quantile of its days late is
at least the days it is already overdue, and one overdue is late for certain. One settled by
then is answered with what happened (``model_version`` ``actual``). Without a model the stated
baseline answers: the customer's median days late so far (its p90 the worst so far, its
probability of paying late the share of its invoices paid late).

Factors: how many days each feature moved the median prediction away from the typical
invoice's (one batch of predictions, see ``_factors``), the largest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from services.ledger.predictions.features import FEATURES, InvoiceRecord, features, known
from services.ledger.predictions.model import BASELINE, PaymentModel

ACTUAL = "actual"
FACTORS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Prediction:
    invoice_id: str
    as_of: date
    due_date: date
    predicted_pay_date: date
    p10_days_late: int
    p90_days_late: int
    probability_late: float
    model_version: str
    factors: tuple[tuple[str, float], ...]

    @property
    def predicted_days_late(self) -> int:
        return max(0, (self.predicted_pay_date - self.due_date).days)


def predict(target: InvoiceRecord, history: Sequence[InvoiceRecord], as_of: date, known_at: datetime,
            model: PaymentModel | None, version: str) -> Prediction | None:
    """None when the invoice was not issued by ``as_of`` as known at ``known_at``, or was cancelled
    or written off by then (nothing will be paid)."""
    now = known(target, as_of, known_at)
    if now is None or now.cancelled or (now.open_amount <= 0 and now.settled_on is None):
        return None
    if now.settled_on is not None or now.open_amount <= 0:
        late = now.days_late or 0
        paid_on = now.settled_on or as_of
        return Prediction(target.invoice_id, as_of, target.due_date, paid_on, late, late,
                          1.0 if late > 0 else 0.0, ACTUAL, ())
    row = features(target, history, as_of, known_at)
    if model is None:
        low, middle, high = 0.0, row["history_median_days_late"], row["history_max_days_late"]
        probability = row["history_late_share"]
        factors: tuple[tuple[str, float], ...] = (("history_median_days_late", round(middle, 2)),)
        version = BASELINE
    else:
        values = np.asarray([[row[name] for name in FEATURES]], dtype=float)
        quantiles, probabilities = model.predict(values)
        low, middle, high = (float(quantiles[q][0]) for q in (0.1, 0.5, 0.9))
        probability = float(probabilities[0])
        factors = _factors(model, values[0], middle)
    overdue = max(0, (as_of - target.due_date).days)
    if overdue > 0:
        probability = 1.0
    low, middle, high = (max(float(overdue), value) for value in (low, middle, high))
    pay_date = max(as_of, target.due_date + timedelta(days=round(middle)))
    return Prediction(target.invoice_id, as_of, target.due_date, pay_date, round(low), round(high),
                      round(probability, 4), version, factors)


def _factors(model: PaymentModel, row: np.ndarray, middle: float) -> tuple[tuple[str, float], ...]:
    """How many days each feature moved the median from the typical invoice's (every feature at
    its training median) to this one's: the features are set to their medians one after another
    (in ``FEATURES``' order), each credited with the change it makes. They add up to the
    difference between the two predictions, whatever features say the same thing twice."""
    steps = np.repeat(row[np.newaxis, :], len(FEATURES) + 1, axis=0)
    for index, value in enumerate(model.medians):
        steps[index + 1:, index] = value
    path = np.maximum(model.quantiles[0.5].predict(steps), 0.0)
    pushes = [(name, round(float(path[i] - path[i + 1]), 2)) for i, name in enumerate(FEATURES)]
    return tuple(sorted((p for p in pushes if p[1]), key=lambda p: (-abs(p[1]), p[0]))[:FACTORS_SHOWN])
