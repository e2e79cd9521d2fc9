"""Unit tests of dunning policies as data, the default policy, fees and late-payment interest."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.dunning.domain import Policy, default_policy, late_interest
from services.dunning.domain.interest import level_fee

M = Decimal


def level(name: str, days: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "days_past_due": days, "channel": "email", "template": name, **kw}


# --------------------------------------------------------------------------- the default policy


def test_the_default_policy_is_the_one_the_issue_describes() -> None:
    policy = default_policy()
    assert (policy.name, policy.version) == ("default", 1)
    assert [(lv.days_past_due, lv.channels, lv.escalate) for lv in policy.levels] == [
        (-3, ("email",), False),
        (7, ("email",), False),
        (21, ("email", "letter"), False),
        (35, ("phone_task",), False),
        (60, ("letter",), False),
        (90, ("letter",), True),
    ]
    assert [lv.template for lv in policy.levels] == [
        "courtesy_reminder", "first_notice", "second_notice", "phone_call", "final_demand",
        "collections_handoff",
    ]
    assert [lv.fee for lv in policy.levels] == [M("0"), M("0"), M("5.00"), M("10.00"), M("15.00"), M("0")]
    assert policy.promise_grace_days == 3
    assert policy.annual_interest_percent is None


def test_a_policy_round_trips_through_json_with_money_as_strings() -> None:
    policy = default_policy()
    data = policy.model_dump(mode="json")
    assert data["levels"][2]["fee"] == "5.00"
    assert data["levels"][2]["channel"] == "email"  # the contract's single channel: the first
    assert data["levels"][2]["channels"] == ["email", "letter"]
    assert Policy.model_validate(data) == policy
    assert Policy.model_validate_json(policy.model_dump_json()) == policy


# --------------------------------------------------------------------------- validation


def test_channel_may_be_one_name_or_a_list() -> None:
    policy = Policy.model_validate({"name": "p", "levels": [
        level("a", 1), level("b", 10, channel=["email", "letter"]),
    ]})
    assert [lv.channels for lv in policy.levels] == [("email",), ("email", "letter")]


@pytest.mark.parametrize(("levels", "message"), [
    ([level("a", 10), level("b", 5)], "strictly ascending"),
    ([level("a", 10), level("b", 10)], "strictly ascending"),
    ([level("a", 1, escalate=True), level("b", 5)], "only the final level may escalate"),
    ([level("a", 1), level("a", 5)], "names must be unique"),
    ([level("a", 1, channel="fax")], "channels"),
    ([level("a", 1, fee=2.5)], "not a JSON number"),
    ([level("a", 1, fee="-1.00")], "levels.0.fee"),
    ([level("a", 1, min_days_since_last_notice=-1)], "greater than or equal to 0"),
    ([], "at least 1 item"),
])
def test_invalid_policies_are_refused_naming_the_problem(levels: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate({"name": "p", "levels": levels})


def test_interest_and_money_come_from_decimal_strings() -> None:
    policy = Policy.model_validate({
        "name": "statutory", "version": 3, "annual_interest_percent": "9.12",
        "levels": [level("a", 7, fee="2.50", min_amount="20.00")],
    })
    assert policy.annual_interest_percent == M("9.12")
    assert (policy.levels[0].fee, policy.levels[0].min_amount) == (M("2.50"), M("20.00"))
    with pytest.raises(ValidationError, match="not a JSON number"):
        Policy.model_validate({"name": "p", "annual_interest_percent": 9.12, "levels": [level("a", 7)]})


def test_language_specific_template_names() -> None:
    spec = Policy.model_validate({"name": "p", "levels": [
        level("first", 7, template="reminder", templates={"de": "mahnung"}),
    ]}).levels[0]
    assert (spec.template_for("de"), spec.template_for("en"), spec.template_for("fr")) == (
        "mahnung", "reminder", "reminder")


# --------------------------------------------------------------------------- next level


@pytest.mark.parametrize(("current", "days_past_due", "expected"), [
    (0, -10, 1),  # not yet reached, but the courtesy reminder comes first
    (0, -3, 1),
    (0, 0, 1),  # due today: a reminder before the due date still makes sense
    (0, 1, 2),  # overdue: the pre-due reminder is skipped
    (0, 75, 2),  # found late: one step at a time, starting at the first notice
    (2, 100, 3),  # resumed after a pause: the level after the last one
    (5, 90, 6),
    (6, 200, None),  # nothing after the final level
])
def test_the_next_level_goes_one_step_at_a_time(
    current: int, days_past_due: int, expected: int | None
) -> None:
    assert default_policy().next_level(current, days_past_due) == expected


# --------------------------------------------------------------------------- fees and interest


def test_simple_interest_is_rate_over_365_times_days_on_the_open_amount() -> None:
    # 1000.00 x 9.12% / 365 x 60 = 14.9917... -> 14.99
    assert late_interest(M("1000.00"), 60, M("9.12"), "EUR") == M("14.99")
    # 1250.00 x 9.12% / 365 x 35 = 10.9315... -> 10.93
    assert late_interest(M("1250.00"), 35, M("9.12"), "EUR") == M("10.93")
    # 100.00 x 8% / 365 x 1 = 0.02191... -> 0.02
    assert late_interest(M("100.00"), 1, M("8"), "EUR") == M("0.02")


def test_interest_rounds_half_up_to_the_currency_minor_unit() -> None:
    # 100000 JPY x 8% / 365 x 30 = 657.53... -> 658 (no minor unit)
    assert late_interest(M("100000"), 30, M("8"), "JPY") == M("658")
    # 10.000 KWD x 7.3% / 365 x 5 = 0.0100 -> 0.010 (three digits)
    assert late_interest(M("10.000"), 5, M("7.3"), "KWD") == M("0.010")
    # 365.00 x 1% / 365 x 50 = 0.50 exactly; 36.50 x 1% / 365 x 5 = 0.005 -> 0.01 (half up)
    assert late_interest(M("36.50"), 5, M("1"), "EUR") == M("0.01")


def test_no_interest_before_the_due_date_or_without_a_rate() -> None:
    assert late_interest(M("1000.00"), 0, M("9.12"), "EUR") == M("0.00")
    assert late_interest(M("1000.00"), -3, M("9.12"), "EUR") == M("0.00")
    assert late_interest(M("1000.00"), 60, None, "EUR") == M("0.00")


def test_fees_are_shown_at_the_minor_unit_of_the_notice_currency() -> None:
    assert str(level_fee(M("5"), "EUR")) == "5.00"
    assert str(level_fee(M("5"), "JPY")) == "5"


def test_a_policy_has_at_most_max_levels() -> None:
    from pydantic import ValidationError

    from services.dunning.domain.policy import MAX_LEVELS, Policy

    levels = [{"name": f"level-{i}", "days_past_due": i, "channel": "email", "template": "reminder"}
              for i in range(MAX_LEVELS + 1)]
    assert len(Policy.model_validate({"name": "long", "levels": levels[:MAX_LEVELS]}).levels) == MAX_LEVELS
    with pytest.raises(ValidationError) as refused:
        Policy.model_validate({"name": "long", "levels": levels})
    assert [error["type"] for error in refused.value.errors()] == ["too_long"]
