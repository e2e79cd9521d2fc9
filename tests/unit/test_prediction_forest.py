"""The flattened forest (``services/ledger/predictions/forest.py``) predicts what scikit-learn
predicts, for regressors with the quantile loss and for the classifiers, missing values included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from services.ledger.predictions.forest import FlatForests


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(3000, 6))
    rows[rng.random(rows.shape) < 0.05] = np.nan  # some missing: the trees learn where they go
    target = np.nan_to_num(rows[:, 0]) * 10 + np.nan_to_num(rows[:, 1]) ** 2 + rng.normal(size=3000)
    return rows, target


def alone(model: Any, rows: np.ndarray) -> np.ndarray:
    """One model's raw answers, its trees flattened and walked alone."""
    return FlatForests({"one": model}).raw([("one", rows)])[0]


def test_a_quantile_regressor_flattened_predicts_the_same(data: tuple[np.ndarray, np.ndarray]) -> None:
    rows, target = data
    model = HistGradientBoostingRegressor(loss="quantile", quantile=0.9, max_iter=80, random_state=1)
    model.fit(rows, target)
    fresh = np.random.default_rng(4).normal(size=(500, 6))
    fresh[::7, 2] = np.nan
    assert np.abs(alone(model, fresh) - model.predict(fresh)).max() < 1e-9
    assert np.abs(alone(model, fresh[:1]) - model.predict(fresh[:1])).max() < 1e-9  # one row alone


def test_a_classifier_flattened_gives_the_same_probability(data: tuple[np.ndarray, np.ndarray]) -> None:
    rows, target = data
    labels = (target > 5).astype(int)
    model = HistGradientBoostingClassifier(max_iter=80, random_state=1).fit(rows, labels)
    fresh = np.random.default_rng(5).normal(size=(400, 6))
    assert list(model.classes_) == [0, 1]
    assert np.abs(expit(alone(model, fresh)) - model.predict_proba(fresh)[:, 1]).max() < 1e-12


def test_more_than_two_classes_are_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    rows, target = data
    labels = np.digitize(target, [-5, 5])
    model = HistGradientBoostingClassifier(max_iter=5, random_state=1).fit(rows, labels)
    with pytest.raises(ValueError, match="one tree per iteration"):
        FlatForests({"one": model})


def test_several_models_walked_together_answer_as_each_alone(data: tuple[np.ndarray, np.ndarray]) -> None:
    """One walk for a prediction's models and its factors' path: each ask, the same model asked
    twice included, gets what scikit-learn gives it alone, rows with missing values too."""
    rows, target = data
    median = HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=60, random_state=2)
    median.fit(rows, target)
    high = HistGradientBoostingRegressor(loss="quantile", quantile=0.9, max_iter=30, max_leaf_nodes=7,
                                         random_state=2).fit(rows, target)
    late = HistGradientBoostingClassifier(max_iter=40, random_state=2).fit(rows, (target > 5).astype(int))
    forests = FlatForests({"median": median, "high": high, "late": late})
    fresh = np.random.default_rng(6).normal(size=(40, 6))
    fresh[::5, 0] = np.nan
    one, path = fresh[:1], fresh[1:]
    asked = [("median", one), ("high", one), ("late", one), ("median", path), ("high", fresh[:0])]
    found = forests.raw(asked)
    assert [len(answer) for answer in found] == [1, 1, 1, 39, 0]
    assert np.abs(found[0] - median.predict(one)).max() < 1e-9
    assert np.abs(found[1] - high.predict(one)).max() < 1e-9
    assert np.abs(expit(found[2]) - late.predict_proba(one)[:, 1]).max() < 1e-12
    assert np.abs(found[3] - median.predict(path)).max() < 1e-9
