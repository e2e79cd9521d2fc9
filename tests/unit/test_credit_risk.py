"""Unit tests of risk scoring: every factor worked out by hand, and the factors add up to the score.

Default model: recency weights 4 (due at most 90 days before as_of), 2 (180), 1 (365);
saturations 60 days late, 90 days past due, dispute rate 0.5, trend 30 days; weights 35, 25,
25, 10, 5; grades A < 20 <= B < 40 <= C < 60 <= D < 80 <= E.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.credit.domain import InvoiceHistory, RiskAssessment, RiskModel, assess

M = Decimal
D = date.fromisoformat
MODEL = RiskModel()


def inv(invoice_id: str, issue: str, due: str, settled: str | None = None,
        disputed: bool = False) -> InvoiceHistory:
    return InvoiceHistory(invoice_id, D(issue), D(due), D(settled) if settled else None,
                          settled is None, disputed)


def contributions(assessment: RiskAssessment) -> dict[str, Decimal]:
    return {f.name: f.contribution for f in assessment.factors}


def test_every_factor_by_hand() -> None:
    history = [
        inv("A", "2025-01-01", "2025-01-31", "2025-02-10"),  # 10 late; due 150 days before: weight 2
        inv("B", "2025-04-01", "2025-05-01", "2025-05-01"),  # on time; 60 days: weight 4
        inv("C", "2025-05-01", "2025-05-31"),  # open, 30 days past due: weight 4
        inv("N", "2025-06-15", "2025-07-15", disputed=True),  # not yet due: disputes only
    ]
    risk = assess(history, D("2025-06-30"), MODEL)
    factors = {f.name: f for f in risk.factors}
    # (2 x 10 + 4 x 0 + 4 x 30) / (2 + 4 + 4) = 14; 14 / 60 x 35 = 8.1666..
    assert (factors["weighted_days_late"].value, factors["weighted_days_late"].contribution) == (
        M("14.00"), M("8.17"))
    # A and C late of three: 2/3 x 25 = 16.666..
    assert (factors["late_share"].value, factors["late_share"].contribution) == (M("0.6667"), M("16.67"))
    # C 30 days past due: 30 / 90 x 25 = 8.333..
    assert (factors["max_days_past_due"].value, factors["max_days_past_due"].contribution) == (
        M(30), M("8.33"))
    # one of four issued in the year disputed: 0.25 / 0.5 x 10
    assert (factors["dispute_rate"].value, factors["dispute_rate"].contribution) == (M("0.2500"), M("5.00"))
    # due in the last 90 days: B 0, C 30 -> 15; earlier: A 10 -> worse by 5; 5 / 30 x 5 = 0.8333..
    assert (factors["trend"].value, factors["trend"].contribution) == (M("5.00"), M("0.83"))
    assert risk.score == M("39.00") == sum(contributions(risk).values())
    assert risk.grade == "B"
    assert risk.invoices_assessed == 3
    assert risk.as_dict()["factors"][0] == {
        "name": "weighted_days_late", "value": "14.00", "intensity": "0.2333", "weight": "35",
        "contribution": "8.17", "detail": "recency-weighted average days late over 3 invoices"}


def test_a_customer_without_anything_due_is_not_rated() -> None:
    risk = assess([inv("N", "2025-06-15", "2025-07-15")], D("2025-06-30"), MODEL)
    assert (risk.grade, risk.score, risk.invoices_assessed) == (None, M("0.00"), 0)
    assert all(f.contribution == 0 for f in risk.factors)


def test_paying_on_time_or_early_scores_zero_and_grade_a() -> None:
    history = [inv("A", "2025-01-01", "2025-01-31", "2025-01-31"),
               inv("E", "2025-06-01", "2025-07-01", "2025-06-20")]  # paid before it is due
    risk = assess(history, D("2025-06-30"), MODEL)
    assert (risk.score, risk.grade, risk.invoices_assessed) == (M("0.00"), "A", 2)


def test_a_long_overdue_invoice_saturates_to_grade_e() -> None:
    # 100 days past due: 35 (capped) + 25 (all late) + 25 (capped) + 0 + 0 (no earlier history)
    risk = assess([inv("A", "2025-01-01", "2025-01-31")], D("2025-05-11"), MODEL)
    assert contributions(risk) == {"weighted_days_late": M("35.00"), "late_share": M("25.00"),
                                   "max_days_past_due": M("25.00"), "dispute_rate": M("0.00"),
                                   "trend": M("0.00")}
    assert (risk.score, risk.grade) == (M("85.00"), "E")


def test_improving_behaviour_does_not_score_on_trend_but_lowers_the_weighted_average() -> None:
    history = [inv("OLD", "2024-09-01", "2024-10-01", "2024-11-30"),  # 60 late, 272 days ago: weight 1
               inv("NEW", "2025-05-01", "2025-05-31", "2025-05-31")]  # on time, weight 4
    risk = assess(history, D("2025-06-30"), MODEL)
    factors = {f.name: f for f in risk.factors}
    assert factors["trend"].value == M("-60.00") and factors["trend"].contribution == M("0.00")
    # (1 x 60 + 4 x 0) / 5 = 12 -> 12 / 60 x 35 = 7; late share 1/2 -> 12.50
    assert (factors["weighted_days_late"].contribution, factors["late_share"].contribution) == (
        M("7.00"), M("12.50"))
    assert (risk.score, risk.grade) == (M("19.50"), "A")


def test_history_outside_the_window_is_forgotten_but_old_open_invoices_are_not() -> None:
    history = [inv("PAID", "2023-01-01", "2023-01-31", "2023-06-30"),  # settled, due 2 years ago
               inv("OPEN", "2023-01-01", "2023-01-31")]  # still open: current behaviour
    risk = assess(history, D("2025-01-31"), MODEL)
    assert risk.invoices_assessed == 1
    assert {f.name: f.value for f in risk.factors}["max_days_past_due"] == M(731)


def test_the_model_is_data_and_validated() -> None:
    data = MODEL.model_dump(mode="json")
    assert data["weights"] == {"weighted_days_late": "35", "late_share": "25", "max_days_past_due": "25",
                               "dispute_rate": "10", "trend": "5"}
    assert RiskModel.model_validate(data) == MODEL
    with pytest.raises(ValidationError, match="sum to 100"):
        RiskModel.model_validate({"weights": {"trend": "10"}})
    with pytest.raises(ValidationError, match="ascend"):
        RiskModel.model_validate({"grades": {"B": "50", "C": "40"}})
    with pytest.raises(ValidationError, match="ascend"):
        RiskModel.model_validate({"recency": [{"max_age_days": 180, "weight": "2"},
                                              {"max_age_days": 90, "weight": "4"}]})
    with pytest.raises(ValidationError, match="decimal string"):
        RiskModel.model_validate({"dispute_rate_saturation": 0.5})  # no floats
    custom = RiskModel.model_validate({"grades": {"B": "10", "C": "20", "D": "25", "E": "30"}})
    assert assess([inv("A", "2025-01-01", "2025-01-31", "2025-02-10")], D("2025-03-01"), custom).grade == "E"
