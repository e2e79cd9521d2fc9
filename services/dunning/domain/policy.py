"""Dunning policies as data: an ordered list of levels, each with its conditions and channels.

A policy is stored, versioned and edited as JSON (``PUT /policies/{name}``); this module
validates it. Levels are numbered from 1 in the order given, which must be strictly
ascending in ``days_past_due``. PolicyMoney (fees, minimum amounts) is a decimal string and is
read in the currency of the notice it applies to; the interest rate is an annual percentage.

A level's ``template`` is a base name; the file rendered is ``{name}.{language}.j2``, and
``templates`` may give another base name for a language (``{"de": "mahnung_1"}``).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from shared.money import ZERO, parse_amount
from shared.values import Channel, Language, PolicyMoney, RuleName

DEFAULT_POLICY_NAME = "default"


# The most levels a policy may have: amounts at risk weigh an invoice by its level (open amount
# times 1 + level), and that product must stay within the read models' BIGINT money.
MAX_LEVELS = 50


class Level(BaseModel):
    """One step of a policy: when it is reached, how the customer is told, and its conditions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: RuleName
    days_past_due: int = Field(description="reached on due date + this many days; negative: before due")
    channels: tuple[Channel, ...] = Field(min_length=1)
    template: RuleName
    templates: dict[Language, RuleName] = Field(default_factory=dict)
    fee: PolicyMoney = ZERO
    min_amount: PolicyMoney = Field(default=ZERO, description="the notice's open total must reach this")
    min_days_since_last_notice: int = Field(default=0, ge=0)
    respond_within_days: int | None = Field(default=None, ge=0)
    escalate: bool = False

    @model_validator(mode="before")
    @classmethod
    def _channel_or_channels(cls, data: Any) -> Any:
        """Accept the contract's ``channel`` (one name or a list) as well as ``channels``."""
        if isinstance(data, dict) and "channel" in data:
            data = dict(data)
            channel = data.pop("channel")
            if "channels" not in data:
                data["channels"] = [channel] if isinstance(channel, str) else list(channel)
            elif channel not in (list(data["channels"][:1]), list(data["channels"]), data["channels"][0]):
                raise ValueError("channel must be the first of channels")
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def channel(self) -> Channel:
        """The first (primary) channel, the contract's ``channel``."""
        return self.channels[0]

    def template_for(self, language: str) -> str:
        """The template base name for a language."""
        return self.templates.get(language, self.template)


class Policy(BaseModel):
    """A named, versioned dunning policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: RuleName
    version: int = Field(default=1, ge=1)
    description: str = ""
    levels: tuple[Level, ...] = Field(min_length=1, max_length=MAX_LEVELS)
    promise_grace_days: int = Field(default=3, ge=0)
    respond_within_days: int = Field(default=14, ge=0)
    annual_interest_percent: Decimal | None = Field(
        default=None, ge=ZERO, le=Decimal(100),
        description="statutory late-payment interest, simple, per year; none when absent",
    )
    default_language: Language = "en"
    plan_grace_days: int = Field(default=5, ge=0, description="days after an instalment's due date "
                                 "before a run breaks the plan when it is not fully paid")
    instalment_reminder_days: int = Field(default=3, ge=0, description="days before an instalment's "
                                          "due date its reminder goes out")
    statement_day: int | None = Field(default=None, ge=1, le=31, description="the day of the month "
                                      "statement runs include the customer (a shorter month: its "
                                      "last day); none: every statement run")
    confirm_balance_every: int | None = Field(default=None, ge=1, le=120, description="months "
                                              "between statements that ask the customer to "
                                              "confirm its balance; none: never")

    @model_validator(mode="before")
    @classmethod
    def _interest_from_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("annual_interest_percent") is not None:
            percent = data["annual_interest_percent"]
            if not isinstance(percent, Decimal):
                data = {**data, "annual_interest_percent": parse_amount(percent)}
        return data

    @model_validator(mode="after")
    def _levels_are_ordered(self) -> Policy:
        days = [level.days_past_due for level in self.levels]
        if any(later <= earlier for earlier, later in pairwise(days)):
            raise ValueError(f"levels: days_past_due must be strictly ascending, got {days}")
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"levels: names must be unique, got {names}")
        if any(level.escalate for level in self.levels[:-1]):
            raise ValueError("levels: only the final level may escalate")
        return self

    def level(self, number: int) -> Level:
        """Level ``number`` (1-based)."""
        return self.levels[number - 1]

    def next_level(self, current: int, days_past_due: int) -> int | None:
        """The level an invoice at ``current`` (0: none yet) goes to next, if any.

        Levels go one step at a time, so an invoice that was paused, disputed or held back
        resumes at the level after its last one; reminders before the due date (levels with
        ``days_past_due`` <= 0) are skipped once the invoice is overdue.
        """
        for number in range(current + 1, len(self.levels) + 1):
            if days_past_due > 0 and self.levels[number - 1].days_past_due <= 0:
                continue
            return number
        return None

    def respond_days(self, number: int) -> int:
        own = self.level(number).respond_within_days
        return self.respond_within_days if own is None else own


def _level(name: str, days: int, channels: tuple[Channel, ...], fee: str, min_amount: str,
           min_days: int, **extra: Any) -> Level:
    return Level(name=name, days_past_due=days, channels=channels, template=name, fee=Decimal(fee),
                 min_amount=Decimal(min_amount), min_days_since_last_notice=min_days, **extra)


def default_policy() -> Policy:
    """The policy shipped with the service (used for customers without ``dunning_policy``).

    A courtesy reminder 3 days before due (email); notices 7, 21 and 35 days past due
    (email; email and letter; a phone task); a final demand at 60 (letter); hand-off to
    collections at 90 (a letter to the customer and ``dunning.escalated``).
    """
    return Policy(
        name=DEFAULT_POLICY_NAME,
        version=1,
        description="Courtesy reminder, three notices, final demand, hand-off to collections",
        levels=(
            _level("courtesy_reminder", -3, ("email",), "0", "0", 0),
            _level("first_notice", 7, ("email",), "0", "10.00", 7),
            _level("second_notice", 21, ("email", "letter"), "5.00", "10.00", 14),
            _level("phone_call", 35, ("phone_task",), "10.00", "50.00", 14),
            _level("final_demand", 60, ("letter",), "15.00", "100.00", 14, respond_within_days=10),
            _level("collections_handoff", 90, ("letter",), "0", "250.00", 14, escalate=True),
        ),
        promise_grace_days=3,
        respond_within_days=14,
    )
