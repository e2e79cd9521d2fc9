"""The payment model: days late per invoice, learnt from the ledger's own settled invoices.

Training examples (``training_set``): every invoice settled as known at the cut-off and due
at least ``MATURITY_DAYS`` before it, seen at its issue date and, while still open, on its due
date and on each of ``FOLLOW_UPS`` after it (so that the model learns what becomes of an
invoice already overdue); the features are those the invoice had on that day as recorded by
the cut-off (nothing dated after the day, nothing recorded after the cut-off: what a
prediction asked on that day would see with the cut-off's knowledge), the label its days late
as known at the cut-off. (Not as recorded on that day: a
book imported or replayed at once would then have no history at all.)

Models (scikit-learn's histogram gradient boosting, deterministic for a seed): three
regressors with the quantile loss (p10, p50 and p90 of days late) and two classifiers: of
paying late at all, and of paying more than ``VERY_LATE_DAYS`` late (what the expected loss
weighs). With fewer than ``MIN_EXAMPLES`` examples there is no model: predictions come from the
stated baseline (``BASELINE``: the customer's median days late so far).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from services.ledger.predictions.features import FEATURES, InvoiceRecord, features_many, known
from services.ledger.predictions.forest import FlatForests

QUANTILES = (0.1, 0.5, 0.9)
MIN_EXAMPLES = 200
VERY_LATE_DAYS = 30  # "paying more than 30 days late": what the expected loss weighs
MATURITY_DAYS = 90  # an invoice teaches once due this long (see training_set)
FOLLOW_UPS = (0, 15, 30, 60, 90, 120, 180, 270)  # days after its due date an invoice still open is seen again
BASELINE = "baseline-customer-median"
_CLASSIFIERS = ("late", "very_late")  # PaymentModel's attributes: of paying late, of paying very late


@dataclass
class TrainingSet:
    rows: list[list[float]] = field(default_factory=list)
    days_late: list[int] = field(default_factory=list)
    invoices: dict[str, int] = field(default_factory=dict)  # each invoice's days late (once)
    at_issue: list[bool] = field(default_factory=list)  # the row sees its invoice on its issue date

    def add(self, row: Mapping[str, float], days_late: int, invoice_id: str, at_issue: bool = True) -> None:
        self.rows.append([row[name] for name in FEATURES])
        self.days_late.append(days_late)
        self.invoices[invoice_id] = days_late
        self.at_issue.append(at_issue)

    @property
    def late_share(self) -> float:
        """The share of the invoices (each once) paid late: the base rate."""
        return sum(1 for d in self.invoices.values() if d > 0) / len(self.invoices) if self.invoices else 0.0


def training_set(records_by_customer: Mapping[str, Sequence[InvoiceRecord]], cutoff: datetime,
                 day: date | None = None, maturity_days: int = MATURITY_DAYS) -> TrainingSet:
    """The examples the invoices settled by ``cutoff`` (as recorded by then; and by ``day``, its
    date unless given: a backtest of a book recorded at once cuts by business date) teach: those
    due at least ``maturity_days`` before ``day``, seen on their issue date and on each of
    ``FOLLOW_UPS`` (days after the due date) when still open then.

    Why only the mature ones: of the invoices due lately, those settled already are the ones
    paid early or on time; the late ones are still open. Learning from them would teach that
    invoices are paid earlier than they are (measured on the backtest: predicted probabilities of
    a tenth were late six times in ten)."""
    found = TrainingSet()
    day = day or cutoff.date()
    mature = day - timedelta(days=maturity_days)
    # customer by customer in their ids' order: the rows' order moves the fit (its binning sample
    # and its early-stopping split), and must not depend on how the mapping was read
    for customer in sorted(records_by_customer):
        history = records_by_customer[customer]
        questions: list[tuple[int, date]] = []
        labels: list[tuple[int, str, bool]] = []
        for index, record in enumerate(history):
            if record.due_date > mature:
                continue
            final = known(record, day, cutoff)
            if final is None:
                continue
            if final.days_late is None:
                continue  # (one still open is left out too: labelled with its days so far, measured worse)
            questions.append((index, record.issue_date))
            labels.append((final.days_late, record.invoice_id, True))
            for after in FOLLOW_UPS:
                seen_on = record.due_date + timedelta(days=after)
                seen = known(record, seen_on, cutoff) if seen_on < day else None
                if seen is None or seen.open_amount <= 0:
                    break
                questions.append((index, seen_on))
                labels.append((final.days_late, record.invoice_id, False))
        rows = features_many(history, cutoff, questions)
        for row, (days_late, invoice_id, at_issue) in zip(rows, labels, strict=True):
            found.add(row, days_late, invoice_id, at_issue)
    return found


@dataclass
class PaymentModel:
    """The fitted models of one version, and what it was trained on."""

    quantiles: dict[float, HistGradientBoostingRegressor]
    late: HistGradientBoostingClassifier | None  # None: every example was on time (or every one late)
    late_share: float
    medians: list[float]  # each feature's median over the invoices as issued (a factor's reference)
    libraries: dict[str, str]
    very_late: HistGradientBoostingClassifier | None = None  # more than VERY_LATE_DAYS late
    very_late_share: float = 0.0
    # the features it was trained on, in their order (a version stored before they were recorded
    # reads () here: see ``store._load``)
    features: tuple[str, ...] = ()

    def predict(self, rows: np.ndarray) -> tuple[dict[float, np.ndarray], np.ndarray, np.ndarray]:
        """Per row: the quantiles of days late (ordered, never below zero), P(late) and P(more
        than ``VERY_LATE_DAYS`` late)."""
        quantiles, late, very_late, _ = self.predict_with_p50(rows, rows[:0])
        return quantiles, late, very_late

    def predict_with_p50(self, rows: np.ndarray, more: np.ndarray
                         ) -> tuple[dict[float, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """``predict`` of ``rows``, and ``p50`` of ``more`` (a factors' path): every model asked
        at once."""
        classifiers = [name for name in _CLASSIFIERS if getattr(self, name) is not None]
        names: list[Any] = [*QUANTILES, *classifiers]
        answers = self._ask([*((name, rows) for name in names), (0.5, more)])
        found = dict(zip(names, answers, strict=False))
        ordered = np.sort(np.vstack([np.maximum(found[q], 0.0) for q in QUANTILES]), axis=0)
        late, very_late = (found[name] if name in found else np.full(rows.shape[0], share)
                           for name, share in zip(_CLASSIFIERS, (self.late_share, self.very_late_share),
                                                  strict=True))
        return ({q: ordered[i] for i, q in enumerate(QUANTILES)}, late, very_late,
                np.maximum(answers[-1], 0.0))

    def p50(self, rows: np.ndarray) -> np.ndarray:
        """The p50 regressor alone (never below zero)."""
        return np.maximum(self._ask([(0.5, rows)])[0], 0.0)

    # An ask of a few rows goes through the flattened trees, every such ask of a call in one walk
    # (forest.py: scikit-learn calls each tree from Python, a millisecond a model for one row);
    # one of many rows through scikit-learn, whose compiled loop over rows wins there (measured
    # on the million-invoice book's 200-tree models: 100 rows 1.27 ms flat against 1.46, 256 rows
    # 3.8 against 2.0; 21 rows, a factors' path, 0.27 against 1.26).
    FEW_ROWS = 100

    def _ask(self, asked: list[tuple[Any, np.ndarray]]) -> list[np.ndarray]:
        """Each (model, rows)'s answers: a regressor's days late, a classifier's P(1)."""
        few = [(name, rows) for name, rows in asked if 0 < len(rows) <= self.FEW_ROWS]
        walked = iter(self._forests().raw(few) if few else [])
        found = []
        for name, rows in asked:
            if len(rows) == 0:
                found.append(np.zeros(0))
            elif len(rows) <= self.FEW_ROWS:
                raw = next(walked)
                found.append(expit(raw) if name in _CLASSIFIERS else raw)
            elif name in _CLASSIFIERS:
                classifier = getattr(self, name)
                found.append(classifier.predict_proba(rows)[:, list(classifier.classes_).index(1)])
            else:
                found.append(self.quantiles[name].predict(rows))
        return found

    def _forests(self) -> FlatForests:
        """Every model's trees flattened (``forest.py``), once per process (not pickled)."""
        found = self.__dict__.get("_flat")
        if found is None:
            models = {**self.quantiles, **{name: getattr(self, name) for name in _CLASSIFIERS}}
            found = FlatForests({name: model for name, model in models.items() if model is not None})
            self.__dict__["_flat"] = found
        return found

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_flat"}

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
    late, very_late = (days > 0).astype(int), (days > VERY_LATE_DAYS).astype(int)
    issued = np.asarray(training.at_issue, dtype=bool)  # the typical invoice, as issued (see medians)
    typical = np.median(rows[issued] if issued.any() else rows, axis=0)
    return PaymentModel(quantiles=quantiles, late=_classifier(rows, late, seed),
                        late_share=float(late.mean()), medians=[float(v) for v in typical],
                        libraries={"scikit-learn": sklearn.__version__, "numpy": np.__version__},
                        very_late=_classifier(rows, very_late, seed), very_late_share=float(very_late.mean()),
                        features=FEATURES)


def _classifier(rows: np.ndarray, labels: np.ndarray, seed: int) -> HistGradientBoostingClassifier | None:
    """None when every label is the same (nothing to tell apart: the share answers)."""
    if not 0 < labels.sum() < len(labels):
        return None
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                          min_samples_leaf=20, random_state=seed).fit(rows, labels)



def metrics(model: PaymentModel, training: TrainingSet) -> dict[str, Any]:
    """How it fits what it learnt from (in-sample; the backtest measures the rest)."""
    rows = np.asarray(training.rows, dtype=float)
    days = np.asarray(training.days_late, dtype=float)
    quantiles, probability, _ = model.predict(rows)
    late = (days > 0).astype(float)
    return {"mae_days": round(float(np.mean(np.abs(quantiles[0.5] - days))), 4),
            "brier": round(float(np.mean((probability - late) ** 2)), 4),
            "late_share": round(float(late.mean()), 4), "examples": len(days)}
