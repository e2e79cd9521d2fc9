"""The payment model: days late per invoice, learnt from the ledger's own settled invoices.

Training examples (``training_set``): every invoice settled as known at the cut-off, seen at
its issue date and, if it was still open then, at its due date; the features are those the
invoice had on that day as recorded by the cut-off (nothing dated after the day, nothing
recorded after the cut-off: what a prediction asked on that day would see with the cut-off's
knowledge), the label its days late as known at the cut-off. (Not as recorded on that day: a
book imported or replayed at once would then have no history at all.)

Models (scikit-learn's histogram gradient boosting, deterministic for a seed): three
regressors with the quantile loss (p10, p50 and p90 of days late) and a classifier of paying
late at all. With fewer than ``MIN_EXAMPLES`` examples there is no model: predictions come
from the stated baseline (``BASELINE``: the customer's median days late so far).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from services.ledger.predictions.features import FEATURES, InvoiceRecord, features, known

QUANTILES = (0.1, 0.5, 0.9)
MIN_EXAMPLES = 200
BASELINE = "baseline-customer-median"


@dataclass
class TrainingSet:
    rows: list[list[float]] = field(default_factory=list)
    days_late: list[int] = field(default_factory=list)
    invoices: set[str] = field(default_factory=set)

    def add(self, row: Mapping[str, float], days_late: int, invoice_id: str) -> None:
        self.rows.append([row[name] for name in FEATURES])
        self.days_late.append(days_late)
        self.invoices.add(invoice_id)


def training_set(records_by_customer: Mapping[str, Sequence[InvoiceRecord]], cutoff: datetime,
                 day: date | None = None) -> TrainingSet:
    """The examples the invoices settled by ``cutoff`` (as recorded by then; and by ``day``, its
    date unless given: a backtest of a book recorded at once cuts by business date) teach."""
    found = TrainingSet()
    day = day or cutoff.date()
    for history in records_by_customer.values():
        for record in history:
            final = known(record, day, cutoff)
            if final is None or final.days_late is None:
                continue
            label, invoice_id = final.days_late, record.invoice_id
            found.add(features(record, history, record.issue_date, cutoff), label, invoice_id)
            seen = known(record, record.due_date, cutoff)
            if record.due_date < day and seen is not None and seen.open_amount > 0:
                found.add(features(record, history, record.due_date, cutoff), label, invoice_id)
    return found


@dataclass
class PaymentModel:
    """The fitted models of one version, and what it was trained on."""

    quantiles: dict[float, HistGradientBoostingRegressor]
    late: HistGradientBoostingClassifier | None  # None: every example was on time (or every one late)
    late_share: float
    medians: list[float]  # each feature's training median (what a factor is measured against)
    libraries: dict[str, str]

    def predict(self, rows: np.ndarray) -> tuple[dict[float, np.ndarray], np.ndarray]:
        """Per row: the quantiles of days late (ordered, never below zero) and P(late)."""
        values = {q: np.maximum(model.predict(rows), 0.0) for q, model in self.quantiles.items()}
        ordered = np.sort(np.vstack([values[q] for q in QUANTILES]), axis=0)
        quantiles = {q: ordered[i] for i, q in enumerate(QUANTILES)}
        if self.late is None:
            probability = np.full(rows.shape[0], self.late_share)
        else:
            probability = self.late.predict_proba(rows)[:, list(self.late.classes_).index(1)]
        return quantiles, probability

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @staticmethod
    def loads(blob: bytes) -> PaymentModel:
        model = pickle.loads(blob)  # (written by this service into its own database)
        if not isinstance(model, PaymentModel):
            raise TypeError("not a payment model")
        return model


def fit(training: TrainingSet, seed: int = 7) -> PaymentModel:
    """The models of ``training`` (deterministic for a seed)."""
    rows = np.asarray(training.rows, dtype=float)
    days = np.asarray(training.days_late, dtype=float)
    # Whole days tie: most invoices are paid exactly on time, and the quantile loss's gradient
    # is zero at a tie, so the boosting would not move off the median of all (measured: every
    # example of a customer 20 days late predicted 0). A hundredth of a day of noise, seeded,
    # breaks the ties and changes no answer (they are rounded to whole days).
    jittered = days + np.random.default_rng(seed).uniform(-0.01, 0.01, size=days.shape)
    quantiles = {}
    for q in QUANTILES:
        regressor = HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=200,
                                                  learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=20,
                                                  random_state=seed)
        quantiles[q] = regressor.fit(rows, jittered)
    late = (days > 0).astype(int)
    classifier = None
    if 0 < late.sum() < len(late):
        classifier = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                                    min_samples_leaf=20, random_state=seed).fit(rows, late)
    return PaymentModel(quantiles=quantiles, late=classifier, late_share=float(late.mean()),
                        medians=[float(v) for v in np.median(rows, axis=0)],
                        libraries={"scikit-learn": sklearn.__version__, "numpy": np.__version__})


def metrics(model: PaymentModel, training: TrainingSet) -> dict[str, Any]:
    """How it fits what it learnt from (in-sample; the backtest measures the rest)."""
    rows = np.asarray(training.rows, dtype=float)
    days = np.asarray(training.days_late, dtype=float)
    quantiles, probability = model.predict(rows)
    late = (days > 0).astype(float)
    return {"mae_days": round(float(np.mean(np.abs(quantiles[0.5] - days))), 4),
            "brier": round(float(np.mean((probability - late) ** 2)), 4),
            "late_share": round(float(late.mean()), 4), "examples": len(days)}
