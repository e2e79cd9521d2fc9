"""A prediction's factors (``predict._factors``): the path from the typical invoice to this one,
each feature set to its median in ``PATH``'s order and credited with the change it makes. Each
distinct step is predicted once (a customer's invoices share the steps past their own
features); the answer is held here to the plain path, every step of every row predicted."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from services.ledger.predictions.features import FEATURES
from services.ledger.predictions.model import PaymentModel
from services.ledger.predictions.predict import FACTORS_SHOWN, PATH, _factors


@pytest.fixture(scope="module")
def model() -> PaymentModel:
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(4000, len(FEATURES)))
    weights = rng.normal(size=len(FEATURES)) * 5
    weights[[FEATURES.index("amount_log"), FEATURES.index("days_to_due")]] = 20, -15  # (own ones count)
    target = rows @ weights + 3 * rows[:, 0] * rows[:, -1] + rng.normal(size=len(rows))
    regressor = HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=60, random_state=1)
    regressor.fit(rows, target)
    medians = [float(v) for v in np.median(rows, axis=0)]
    return PaymentModel(quantiles={0.1: regressor, 0.5: regressor, 0.9: regressor}, late=None,
                        late_share=0.5, medians=medians, libraries={})


def plain_path(model: PaymentModel, row: np.ndarray) -> tuple[tuple[str, float], ...]:
    steps = [row.copy()]
    for index in PATH:
        step = steps[-1].copy()
        step[index] = model.medians[index]
        steps.append(step)
    values = model.quantiles[0.5].predict(np.asarray(steps))
    values = np.maximum(values, 0.0)
    pushes = [(FEATURES[index], round(float(values[n] - values[n + 1]), 2)) for n, index in enumerate(PATH)]
    assert abs(sum(p for _, p in pushes) - (values[0] - values[-1])) < 0.05  # they add up
    ranked = sorted((p for p in pushes if p[1]), key=lambda p: (-abs(p[1]), p[0]))
    return tuple(ranked[:FACTORS_SHOWN])


@pytest.mark.parametrize("invoices", [3, 300])  # (few rows go through the flattened trees, many not)
def test_the_factors_are_the_plain_paths(model: PaymentModel, invoices: int) -> None:
    rng = np.random.default_rng(invoices)
    rows = rng.normal(size=(invoices, len(FEATURES)))
    customer = [i for i in PATH if FEATURES[i].startswith(("history_", "last_", "overdue_invoices"))]
    rows[:, customer] = rows[0, customer]  # one customer on one day: its own features are the same
    rows[1::2, FEATURES.index("overdue_invoices")] += 1  # (but for the invoice itself, when overdue)
    found = _factors(model, rows)
    assert found == [plain_path(model, row) for row in rows]
    named = {f for row in found for f, _ in row}
    # (both parts of the paths are at stake: the invoice's own steps and the shared ones)
    assert named & {FEATURES[i] for i in customer} and named - {FEATURES[i] for i in customer}
