"""Unit tests of credit rules as data: the default, validation, and a JSON round trip."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.credit.domain import (
    CreditRules,
    LimitExceededRule,
    OverdueDaysRule,
    RiskGradeRule,
    default_rules,
)

M = Decimal


def test_the_default_rules_are_the_ones_the_issue_describes() -> None:
    rules = default_rules()
    assert [rule.code for rule in rules.hold_rules] == ["limit_exceeded", "overdue_days", "risk_grade"]
    assert rules.overdue_rule == OverdueDaysRule(days_past_due=60)
    assert rules.grade_rule == RiskGradeRule(grades=("E",))
    assert rules.limit_rule == LimitExceededRule(tolerance_percent=M(0))
    assert rules.reservation_days == 30


def test_rules_round_trip_through_json_with_amounts_as_strings() -> None:
    rules = CreditRules.model_validate({
        "name": "strict", "version": 2, "reservation_days": 14,
        "hold_rules": [{"code": "limit_exceeded", "tolerance_percent": "5"},
                       {"code": "overdue_days", "days_past_due": 30, "min_amount": "50.00"}],
    })
    data = rules.model_dump(mode="json")
    assert data["hold_rules"][1] == {"code": "overdue_days", "days_past_due": 30, "min_amount": "50.00",
                                     "count_disputed": False}
    assert CreditRules.model_validate(data) == rules
    assert CreditRules.model_validate_json(rules.model_dump_json()) == rules
    assert rules.grade_rule is None  # left out: off
    assert rules.limit_rule is not None and rules.limit_rule.allowed(M("1000.00")) == M("1050.00")


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValidationError, match="one rule per code"):
        CreditRules.model_validate({"hold_rules": [{"code": "overdue_days"}, {"code": "overdue_days"}]})
    with pytest.raises(ValidationError):
        CreditRules.model_validate({"hold_rules": [{"code": "manual"}]})  # manual holds are commands
    with pytest.raises(ValidationError):
        CreditRules.model_validate({"hold_rules": [{"code": "overdue_days", "min_amount": 5.5}]})
    with pytest.raises(ValidationError):
        CreditRules.model_validate({"hold_rules": [{"code": "risk_grade", "grades": ["F"]}]})
    with pytest.raises(ValidationError):
        CreditRules.model_validate({"reservation_days": 0})
    with pytest.raises(ValidationError):
        CreditRules.model_validate({"unknown": 1})
