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

from services.ledger.predictions.features import FEATURES, InvoiceRecord, features_many, known
from services.ledger.predictions.model import BASELINE, VERY_LATE_DAYS, PaymentModel

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
    probability_very_late: float = 0.0  # of paying more than VERY_LATE_DAYS late

    @property
    def predicted_days_late(self) -> int:
        return max(0, (self.predicted_pay_date - self.due_date).days)


def predict(target: InvoiceRecord, history: Sequence[InvoiceRecord], as_of: date, known_at: datetime,
            model: PaymentModel | None, version: str) -> Prediction | None:
    """None when the invoice was not issued by ``as_of`` as known at ``known_at``, or was cancelled
    or written off by then (nothing will be paid)."""
    records = list(history)
    index = next((i for i, r in enumerate(records) if r is target or r.invoice_id == target.invoice_id), None)
    if index is None:
        records.append(target)
        index = len(records) - 1
    else:
        records[index] = target
    return predict_many(records, [index], as_of, known_at, model, version)[0]


def predict_many(records: Sequence[InvoiceRecord], targets: Sequence[int], as_of: date, known_at: datetime,
                 model: PaymentModel | None, version: str) -> list[Prediction | None]:
    """``predict`` for each of ``records[i]`` (one customer's invoices), one batch of features and
    one call of each model for them all."""
    return predict_books([(records, targets)], as_of, known_at, model, version)[0]


def predict_books(books: Sequence[tuple[Sequence[InvoiceRecord], Sequence[int]]], as_of: date,
                  known_at: datetime, model: PaymentModel | None, version: str, explain: bool = True,
                  ) -> list[list[Prediction | None]]:
    """``predict_many`` of several customers' (records, targets) at once: each one's features, then
    one call of each model for the rows of all. ``explain=False``: without factors (the forecast
    and the customers' outlooks show none; a factor's path asks the model twenty-one questions
    a row)."""
    answers: list[list[Prediction | None]] = []
    asked: list[tuple[int, int]] = []  # (book, position in its targets) of each row
    rows: list[dict[str, float]] = []
    for number, (records, targets) in enumerate(books):
        found: list[Prediction | None] = [None] * len(targets)
        modelled: list[int] = []  # positions in targets
        for position, index in enumerate(targets):
            target = records[index]
            now = known(target, as_of, known_at)
            if now is None or now.cancelled or (now.open_amount <= 0 and now.settled_on is None):
                continue
            if now.settled_on is not None or now.open_amount <= 0:
                late = now.days_late or 0
                found[position] = Prediction(target.invoice_id, as_of, target.due_date,
                                             now.settled_on or as_of, late, late, 1.0 if late > 0 else 0.0,
                                             ACTUAL, (), 1.0 if late > VERY_LATE_DAYS else 0.0)
            else:
                modelled.append(position)
        if modelled:
            rows += features_many(records, known_at, [(targets[p], as_of) for p in modelled])
            asked += [(number, p) for p in modelled]
        answers.append(found)
    if not rows:
        return answers
    if model is None:
        # (the baseline's P(very late): whether its answer is more than VERY_LATE_DAYS late)
        estimates = [(0.0, median, row["history_max_days_late"], row["history_late_share"],
                      1.0 if median > VERY_LATE_DAYS else 0.0,
                      (("history_median_days_late", round(median, 2)),) if explain else ())
                     for row in rows for median in (row["history_median_days_late"],)]
        version = BASELINE
    else:
        values = np.asarray([[row[name] for name in FEATURES] for row in rows], dtype=float)
        paths = _Paths(model, values) if explain else None  # (see _factors)
        quantiles, probabilities, very_late, steps = model.predict_with_p50(
            values, paths.rows if paths is not None else values[:0])
        factors = paths.factors(steps) if paths is not None else [()] * len(rows)
        estimates = [(float(quantiles[0.1][n]), float(quantiles[0.5][n]), float(quantiles[0.9][n]),
                      float(probabilities[n]), float(very_late[n]), factors[n]) for n in range(len(rows))]
    for (number, position), (low, middle, high, probability, beyond, pushes) in zip(asked, estimates,
                                                                                     strict=True):
        records, targets = books[number]
        target = records[targets[position]]
        overdue = max(0, (as_of - target.due_date).days)
        if overdue > 0:
            probability = 1.0
        if overdue > VERY_LATE_DAYS:
            beyond = 1.0
        low, middle, high = (max(float(overdue), value) for value in (low, middle, high))
        pay_date = max(as_of, target.due_date + timedelta(days=round(middle)))
        answers[number][position] = Prediction(target.invoice_id, as_of, target.due_date, pay_date,
                                               round(low), round(high), round(probability, 4), version,
                                               pushes, round(beyond, 4))
    return answers


# The features a factor's path sets to their medians first: the invoice's own. Past them, the
# steps of one customer's invoices on one day differ at most in ``overdue_invoices`` (which
# leaves the invoice itself out), so a customer's many invoices share most of their paths and
# each distinct step is predicted once.
_OWN = ("amount_log", "amount_vs_usual", "terms_days", "has_cash_discount", "due_weekday", "due_month_end",
        "due_month", "days_to_due", "disputed_share", "open_share", "older_open_invoices",
        "overdue_amount_ratio")
PATH = tuple(sorted(range(len(FEATURES)), key=lambda i: FEATURES[i] not in _OWN))


def _steps(rows: np.ndarray, medians: Sequence[float], steps: range) -> np.ndarray:
    """Each row at these steps of its path: at step k, the first k features of ``PATH`` set to
    their medians. Shape (rows, steps, features)."""
    found = np.repeat(rows[:, np.newaxis, :], len(steps), axis=1)
    for at, step in enumerate(steps):
        replaced = list(PATH[:step])
        found[:, at, replaced] = np.asarray(medians)[replaced]
    return found


class _Paths:
    """The factors' paths of rows (see ``_factors``): the rows to ask the p50 model, and the
    factors from its answers."""

    def __init__(self, model: PaymentModel, rows: np.ndarray) -> None:
        own, width = len(_OWN), len(FEATURES)
        # the steps past the invoice's own features depend on the customer's features alone: those
        # of the rows that share them are predicted once
        shared, first, self.where = np.unique(rows[:, list(PATH[own:])], axis=0, return_index=True,
                                              return_inverse=True)
        heads = _steps(rows, model.medians, range(own + 1)).reshape(-1, width)
        tails = _steps(rows[first], model.medians, range(own + 1, width + 1)).reshape(-1, width)
        self.heads, self.shared = len(heads), len(shared)
        self.rows = np.concatenate([heads, tails])

    def factors(self, values: np.ndarray) -> list[tuple[tuple[str, float], ...]]:
        """Per row, its factors, from the p50 model's answers for ``rows``."""
        own, width = len(_OWN), len(FEATURES) + 1
        n = self.heads // (own + 1)
        paths = np.hstack([values[:self.heads].reshape(n, own + 1),
                           values[self.heads:].reshape(self.shared, width - own - 1)[np.ravel(self.where)]])
        found = []
        for path in paths:
            pushes = [(FEATURES[index], round(float(path[step] - path[step + 1]), 2))
                      for step, index in enumerate(PATH)]
            ranked = sorted((p for p in pushes if p[1]), key=lambda p: (-abs(p[1]), p[0]))
            found.append(tuple(ranked[:FACTORS_SHOWN]))
        return found


def _factors(model: PaymentModel, rows: np.ndarray) -> list[tuple[tuple[str, float], ...]]:
    """Per row: how many days each feature moved the median from the typical invoice's (every
    feature at its training median) to this one's: the features are set to their medians one
    after another (in ``PATH``'s order: the invoice's own, then the customer's), each credited
    with the change it makes. They add up to the difference between the two predictions,
    whatever features say the same thing twice. (Every row's path in one call of the model,
    each distinct step once; ``predict_many`` asks it with the prediction itself.)"""
    paths = _Paths(model, rows)
    return paths.factors(model.p50(paths.rows))
