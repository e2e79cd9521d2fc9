"""The backtest: for each cut-off date, train on what was settled by then, predict the invoices
open then, and compare with what happened, next to the baselines on the same invoices: "always
on time", "the customer's median days late so far", and for the probability of paying late the
base rate (the share of the training invoices paid late; 1 for one already overdue).

Cut by business date: what took effect by the cut-off (as recorded by now), so that a book
recorded at once (a synthetic one) can be tested. Measured on the invoices open at the
cut-off and settled since: MAE of days late (p50 against the truth), accuracy of late or on
time (probability at least one half), the Brier score of the probability of paying late, and a
calibration table (the predicted probability in tenths against the share that was late).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.ledger.predictions.features import InvoiceRecord, known
from services.ledger.predictions.model import MIN_EXAMPLES, fit, training_set
from services.ledger.predictions.predict import predict_books


@dataclass
class Scores:
    """One predictor's figures over the invoices scored."""

    errors: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    brier: list[float] = field(default_factory=list)
    calibration: dict[int, list[int]] = field(default_factory=dict)  # tenth -> [late, count]

    def add(self, predicted_days: float, probability: float, actual_days: int) -> None:
        late = actual_days > 0
        self.errors.append(abs(predicted_days - actual_days))
        self.hits.append((probability >= 0.5) == late)
        self.brier.append((probability - (1.0 if late else 0.0)) ** 2)
        tenth = min(9, int(probability * 10))
        bucket = self.calibration.setdefault(tenth, [0, 0])
        bucket[0] += int(late)
        bucket[1] += 1

    def summary(self) -> dict[str, Any]:
        n = len(self.errors)
        return {"invoices": n,
                "mae_days": round(sum(self.errors) / n, 3) if n else None,
                "accuracy": round(sum(self.hits) / n, 4) if n else None,
                "brier": round(sum(self.brier) / n, 4) if n else None,
                "calibration": {f"{t / 10:.1f}-{(t + 1) / 10:.1f}": {"late_share": round(late / count, 3),
                                                                    "invoices": count}
                                for t, (late, count) in sorted(self.calibration.items())}}


def backtest(records_by_customer: Mapping[str, Sequence[InvoiceRecord]], cutoffs: Sequence[date],
             now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """Each cut-off's figures for the model and the baselines."""
    results = []
    for cutoff in cutoffs:
        examples = training_set(records_by_customer, now, day=cutoff)
        model = fit(examples, seed) if len(examples.rows) >= MIN_EXAMPLES else None
        scores = {"model": Scores(), "always_on_time": Scores(), "customer_median": Scores(),
                  "base_rate": Scores()}
        asked = []  # per customer: (its records, the invoices open at the cut-off, their days late)
        for history in records_by_customer.values():
            targets, actuals = [], []
            for index, record in enumerate(history):
                then, final = known(record, cutoff, now), known(record, now.date(), now)
                if then is None or final is None or then.open_amount <= 0 or then.cancelled \
                        or final.days_late is None:
                    continue
                targets.append(index)
                actuals.append(final.days_late)
            asked.append((history, targets, actuals))
        books = [(history, targets) for history, targets, _ in asked]
        made = predict_books(books, cutoff, now, model, "model", explain=False)
        baseline = predict_books(books, cutoff, now, None, "baseline", explain=False)
        for (history, targets, actuals), ours_all, theirs_all in zip(asked, made, baseline, strict=True):
            for index, actual, ours, theirs in zip(targets, actuals, ours_all, theirs_all, strict=True):
                if ours is None or theirs is None:
                    continue
                scores["model"].add(ours.predicted_days_late, ours.probability_late, actual)
                scores["customer_median"].add(theirs.predicted_days_late, theirs.probability_late, actual)
                overdue = max(0, (cutoff - history[index].due_date).days)
                scores["always_on_time"].add(overdue, 1.0 if overdue else 0.0, actual)
                base = 1.0 if overdue else examples.late_share
                scores["base_rate"].add(theirs.predicted_days_late, base, actual)
        results.append({"cutoff": cutoff.isoformat(), "training_examples": len(examples.rows),
                        "model_trained": model is not None, "late_share": round(examples.late_share, 4),
                        **{name: s.summary() for name, s in scores.items()}})
    return results


PREDICTORS = ("model", "customer_median", "always_on_time", "base_rate")


def report(results: Sequence[Mapping[str, Any]]) -> str:
    """The backtest's figures as text: per cut-off one line per predictor, then the model's
    calibration (predicted probability of paying late against the share that was)."""
    lines = []
    for result in results:
        lines.append(f"cut-off {result['cutoff']}: {result['training_examples']} training examples, "
                     f"base rate {result['late_share']:.1%} late"
                     + ("" if result["model_trained"] else " (too few: no model, the baseline answers)"))
        lines.append(f"  {'predictor':<16} {'invoices':>8} {'MAE days':>9} {'accuracy':>9} {'Brier':>7}")
        for name in PREDICTORS:
            figures = result[name]
            if not figures["invoices"]:
                continue
            lines.append(f"  {name:<16} {figures['invoices']:>8} {figures['mae_days']:>9.2f} "
                         f"{figures['accuracy']:>9.1%} {figures['brier']:>7.4f}")
        calibration = result["model"]["calibration"]
        if calibration:
            lines.append("  calibration (model): " + ", ".join(
                f"{tenth} → {bucket['late_share']:.0%} of {bucket['invoices']}"
                for tenth, bucket in calibration.items()))
    return "\n".join(lines)
