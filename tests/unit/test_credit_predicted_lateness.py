"""The ledger's predicted lateness in the risk score (issue 20), worked out by hand.

Scored on 31 March 2025: invoice I1 due 31 January, paid 30 days late on 2 March; I2 issued
1 March, due 31 March, open (not yet past due). Without a prediction: weighted days late 30
(intensity 0.5 of 35) 17.50 + late share 1 (of 25) 25.00 = 42.50, grade C. With a prediction
of 45 days late the behaviour factors keep 90% of their weights (the prediction takes 10):
15.75 + 22.50 = 38.25, plus 10 x 45/60 = 7.50: 45.75, still C.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.credit.domain import CreditAccount, RiskModel
from services.credit.domain.risk import (
    InvoiceHistory,
    Prediction,
    PredictionModel,
    Rating,
    RatingModel,
    assess,
)
from tests.unit.ledger_feed_customer import rebuilt_from

D, M = date.fromisoformat, Decimal
AS_OF = D("2025-03-31")
PAID_LATE = InvoiceHistory("I1", D("2025-01-01"), D("2025-01-31"), D("2025-03-02"), False, False)
OPEN = InvoiceHistory("I2", D("2025-03-01"), D("2025-03-31"), None, True, False)


def predicted(days: int, on: str = "2025-03-30") -> Prediction:
    return Prediction(D(on), "v-1", days, "EUR")


def contributions(assessment: Any) -> dict[str, str]:
    return {f.name: str(f.contribution) for f in assessment.factors if f.contribution}


def test_without_a_prediction_the_score_is_as_before() -> None:
    scored = assess([PAID_LATE, OPEN], AS_OF, RiskModel())
    assert (str(scored.score), scored.grade) == ("42.50", "C")
    assert "predicted_lateness" not in [f.name for f in scored.factors]


def test_a_prediction_takes_its_weight_from_the_behaviour() -> None:
    scored = assess([PAID_LATE, OPEN], AS_OF, RiskModel(), prediction=predicted(45))
    assert contributions(scored) == {"weighted_days_late": "15.75", "late_share": "22.50",
                                     "predicted_lateness": "7.50"}
    assert (str(scored.score), scored.grade) == ("45.75", "C")
    factor = scored.factors[-1]
    assert (factor.value, factor.intensity, factor.weight) == (M(45), M("0.7500"), M(10))
    assert "v-1" in factor.detail and "2025-03-30" in factor.detail
    assert sum((f.contribution for f in scored.factors), M(0)) == scored.score


def test_beside_a_rating_both_take_their_weights() -> None:
    """Rating (PD 0.05: 0.25 of 20 = 5.00) and prediction: the behaviour keeps 70%:
    12.25 + 17.50 + 5.00 + 7.50 = 42.25."""
    rating = Rating("bureau", "BB", M(61), M("0.05"), D("2025-03-01"), None)
    scored = assess([PAID_LATE, OPEN], AS_OF, RiskModel(), [rating], predicted(45))
    assert contributions(scored) == {"weighted_days_late": "12.25", "late_share": "17.50",
                                     "outside_rating": "5.00", "predicted_lateness": "7.50"}
    assert str(scored.score) == "42.25"


def test_saturation_and_an_early_payer() -> None:
    """90 days saturates at 10.00; a prediction of paying early adds nothing but is shown."""
    assert contributions(assess([PAID_LATE, OPEN], AS_OF, RiskModel(), prediction=predicted(90))
                         )["predicted_lateness"] == "10.00"
    early = assess([PAID_LATE, OPEN], AS_OF, RiskModel(), prediction=predicted(-3))
    assert early.factors[-1].name == "predicted_lateness" and early.factors[-1].contribution == 0
    assert str(early.score) == "38.25"


@pytest.mark.parametrize("why, invoices, prediction", [
    ("too old (15 days, 14 at most)", [PAID_LATE, OPEN], predicted(45, on="2025-03-16")),
    ("made after the day scored", [PAID_LATE, OPEN], predicted(45, on="2025-04-01")),
    ("nothing open to predict", [PAID_LATE], predicted(45)),
])
def test_a_prediction_that_cannot_speak_for_the_day_is_left_out(
        why: str, invoices: list[InvoiceHistory], prediction: Prediction) -> None:
    scored = assess(invoices, AS_OF, RiskModel(), prediction=prediction)
    assert str(scored.score) == "42.50", why


def test_a_prediction_alone_grades_a_customer_without_history() -> None:
    """Nothing due yet, one open invoice: 10 x 45/60 = 7.50, grade A (rather than not rated)."""
    scored = assess([OPEN], AS_OF, RiskModel(), prediction=predicted(45))
    assert (str(scored.score), scored.grade) == ("7.50", "A")


def test_the_weights_beside_the_behaviour_stay_within_100() -> None:
    with pytest.raises(ValidationError, match="at most 100 together"):
        RiskModel(ratings=RatingModel(weight=M(60)), predictions=PredictionModel(weight=M(50)))


def outlook(currency: str, days: int | None, loss: str = "0.00") -> dict[str, Any]:
    return {"currency": currency, "predicted_days_late": days, "expected_loss": loss}


def test_the_account_records_what_is_new_and_reads_the_latest_by_the_day() -> None:
    account = CreditAccount("C1")
    assert account.record_prediction(D("2025-03-01"), "v-1", [outlook("EUR", 12), outlook("USD", 40, "9.50")])
    assert not account.record_prediction(D("2025-03-02"), "v-2", [outlook("USD", 40), outlook("EUR", 12)])
    assert account.record_prediction(D("2025-03-08"), "v-8", [outlook("USD", 40)])  # a week on: again
    assert not account.record_prediction(D("2025-03-05"), "v-5", [outlook("USD", 3)])  # older than the latest
    assert account.record_prediction(D("2025-03-09"), "v-9", [outlook("USD", 41)])
    used = account.prediction_input(D("2025-03-08"))
    assert used == Prediction(D("2025-03-08"), "v-8", 40, "USD")
    assert account.prediction_input(D("2025-02-28")) is None
    assert account.view()["prediction"]["days_late"] == 41
    # nothing open at the ledger any more: recorded once, and the score then reads no prediction
    assert account.record_prediction(D("2025-03-10"), "v-10", [])
    assert not account.record_prediction(D("2025-03-20"), "v-20", [])
    assert account.prediction_input(D("2025-03-31")) is None
    history = list(account.collect_events())
    assert [type(e).__name__ for e in history].count("LatenessPredicted") == 4
    assert rebuilt_from(history).predictions == account.predictions
