"""Credit rules as data: the hold rules, how long a reservation lasts, and the risk model.

Stored and edited as JSON like the dunning policies; this module validates them. Each
hold rule names its reason code; a rule left out of ``hold_rules`` is off:

- ``limit_exceeded``: exposure in some currency is above its limit (plus an optional
  tolerance in percent of the limit). Currencies without a limit never exceed one.
- ``overdue_days``: some invoice is more than ``days_past_due`` days past due (default 60)
  with more than ``min_amount`` open (disputed amounts left out unless ``count_disputed``).
  Days pass only in the daily review, which marks the invoices that crossed; a payment or
  credit clears the mark at once.
- ``risk_grade``: the customer's grade, as recorded by the last review, is one of
  ``grades`` (default E).

``manual`` is not a rule: manual holds are commands, placed and released by a user.
``warning_rules`` are the early warnings' signals (``services.credit.domain.warnings``); one
with ``hold: true`` holds the customer with reason ``early_warning`` while its warning is open.
Amounts in rules are read in the currency of the figure they are compared with.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.credit.domain.risk import RiskModel
from services.credit.domain.warnings import WarningRule, default_warning_rules
from shared.money import ZERO
from shared.values import Grade, RuleName, RuleNumber

DEFAULT_RULES_NAME = "default"


class LimitExceededRule(BaseModel):
    """Hold when exposure exceeds the limit (by more than ``tolerance_percent`` of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Literal["limit_exceeded"] = "limit_exceeded"
    tolerance_percent: RuleNumber = ZERO

    def allowed(self, limit: Decimal) -> Decimal:
        """The exposure a limit allows before this rule holds."""
        return limit + limit * self.tolerance_percent / Decimal(100)


class OverdueDaysRule(BaseModel):
    """Hold while an invoice is more than ``days_past_due`` days past due."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Literal["overdue_days"] = "overdue_days"
    days_past_due: int = Field(default=60, ge=0)
    min_amount: RuleNumber = Field(default=ZERO, description="the invoice's open amount must be above this")
    count_disputed: bool = False


class RiskGradeRule(BaseModel):
    """Hold while the customer's risk grade is one of ``grades``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Literal["risk_grade"] = "risk_grade"
    grades: tuple[Grade, ...] = Field(default=("E",), min_length=1)


HoldRule = Annotated[LimitExceededRule | OverdueDaysRule | RiskGradeRule, Field(discriminator="code")]


def _default_hold_rules() -> tuple[HoldRule, ...]:
    return (LimitExceededRule(), OverdueDaysRule(), RiskGradeRule())


class CreditRules(BaseModel):
    """A named, versioned rule set; the service holds one (``default_rules()`` unless configured)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: RuleName = DEFAULT_RULES_NAME
    version: int = Field(default=1, ge=1)
    description: str = ""
    hold_rules: tuple[HoldRule, ...] = Field(default_factory=_default_hold_rules)
    reservation_days: int = Field(default=30, ge=1,
                                  description="an approved order's reservation lasts this long")
    risk: RiskModel = Field(default_factory=RiskModel)
    warning_rules: tuple[WarningRule, ...] = Field(
        default_factory=default_warning_rules, description="the early warnings' signals; one left out is off")

    @model_validator(mode="after")
    def _one_rule_per_code(self) -> CreditRules:
        codes = [rule.code for rule in self.hold_rules]
        if len(set(codes)) != len(codes):
            raise ValueError(f"hold_rules: one rule per code, got {codes}")
        signals = [rule.signal for rule in self.warning_rules]
        if len(set(signals)) != len(signals):
            raise ValueError(f"warning_rules: one rule per signal, got {signals}")
        return self

    @property
    def limit_rule(self) -> LimitExceededRule | None:
        return next((r for r in self.hold_rules if isinstance(r, LimitExceededRule)), None)

    @property
    def overdue_rule(self) -> OverdueDaysRule | None:
        return next((r for r in self.hold_rules if isinstance(r, OverdueDaysRule)), None)

    @property
    def grade_rule(self) -> RiskGradeRule | None:
        return next((r for r in self.hold_rules if isinstance(r, RiskGradeRule)), None)


def default_rules() -> CreditRules:
    """The rules shipped with the service: hold over the limit, past 60 days overdue, or at grade E;
    reservations last 30 days; the default risk model."""
    return CreditRules(description="Hold over the limit, more than 60 days past due, or at grade E")
