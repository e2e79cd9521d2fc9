"""Early warnings: signs that a customer is sliding, as rules with thresholds (part of
``CreditRules``, versioned with them), each judged to evidence (the figures that tripped it)
or None. Pure: the account hands in what it knows and records what these find.

Signals (default thresholds and severities):

- ``late_payments``: at least ``min_invoices`` (3) invoices settled in the last
  ``within_days`` (90) days more than ``late_after_days`` (0) days after their due date;
  medium.
- ``days_late_trend``: the mean days late of the last ``invoices`` (5) settled invoices
  exceeds that of the 5 before by ``min_increase_days`` (10) or more; medium.
- ``broken_promise``: a promise to pay broken (``dunning.resumed`` with reason
  ``promise_broken``) or a payment plan broken (``dunning.plan_broken``) in the last
  ``within_days`` (90) days; high.
- ``rating_downgrade``: a provider's latest rating reads worse than its previous one (its
  configured scale, else its probability of default); medium.
- ``risk_grade_worse``: the grade the last review recorded is worse than the one before; medium.
- ``limit_utilisation``: exposure less the securities' cover at least ``min_percent`` (90) of
  a currency's limit; medium.
- ``security_expiring``: a security that counts ends within ``within_days`` (30) days; low.

A rule with ``hold: true`` holds the customer (reason ``early_warning``) while its warning is
open; by default none does.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.credit.domain.risk import GRADES, Rating, RatingModel
from shared.money import ZERO
from shared.values import RuleNumber

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3}
SIGNALS = ("late_payments", "days_late_trend", "broken_promise", "rating_downgrade", "risk_grade_worse",
           "limit_utilisation", "security_expiring")
_CENT = Decimal("0.01")


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hold: bool = Field(default=False, description="hold the customer (early_warning) while it is open")


class LatePaymentsRule(_Rule):
    signal: Literal["late_payments"] = "late_payments"
    severity: Severity = "medium"
    min_invoices: int = Field(default=3, ge=1)
    within_days: int = Field(default=90, ge=1)
    late_after_days: int = Field(default=0, ge=0)


class DaysLateTrendRule(_Rule):
    signal: Literal["days_late_trend"] = "days_late_trend"
    severity: Severity = "medium"
    invoices: int = Field(default=5, ge=1)
    min_increase_days: RuleNumber = Decimal(10)


class BrokenPromiseRule(_Rule):
    signal: Literal["broken_promise"] = "broken_promise"
    severity: Severity = "high"
    within_days: int = Field(default=90, ge=1)


class RatingDowngradeRule(_Rule):
    signal: Literal["rating_downgrade"] = "rating_downgrade"
    severity: Severity = "medium"


class RiskGradeWorseRule(_Rule):
    signal: Literal["risk_grade_worse"] = "risk_grade_worse"
    severity: Severity = "medium"


class LimitUtilisationRule(_Rule):
    signal: Literal["limit_utilisation"] = "limit_utilisation"
    severity: Severity = "medium"
    min_percent: RuleNumber = Field(default=Decimal(90), gt=ZERO)


class SecurityExpiringRule(_Rule):
    signal: Literal["security_expiring"] = "security_expiring"
    severity: Severity = "low"
    within_days: int = Field(default=30, ge=0)


WarningRule = Annotated[
    LatePaymentsRule | DaysLateTrendRule | BrokenPromiseRule | RatingDowngradeRule | RiskGradeWorseRule
    | LimitUtilisationRule | SecurityExpiringRule,
    Field(discriminator="signal"),
]


def default_warning_rules() -> tuple[WarningRule, ...]:
    return (LatePaymentsRule(), DaysLateTrendRule(), BrokenPromiseRule(), RatingDowngradeRule(),
            RiskGradeWorseRule(), LimitUtilisationRule(), SecurityExpiringRule())


@dataclass(frozen=True, slots=True)
class Settled:
    """An invoice settled (paid, credited or written off), as the payment signals read it."""

    invoice_id: str
    due_date: date
    settled_date: date

    @property
    def days_late(self) -> int:
        return max(0, (self.settled_date - self.due_date).days)


@dataclass(frozen=True, slots=True)
class Utilisation:
    currency: str
    exposure: Decimal  # less the securities' cover
    limit: Decimal


@dataclass(frozen=True, slots=True)
class Ending:
    security_id: str
    kind: str
    valid_until: date


class SettledIndex:
    """A customer's paid invoices by settled date, kept as their outcomes come, so that a window
    of dates or the last few cost their size, not the customer's whole history."""

    __slots__ = ("_by_id", "_keys")

    def __init__(self) -> None:
        self._keys: list[tuple[date, str]] = []  # (settled date, invoice id), ascending
        self._by_id: dict[str, Settled] = {}

    def update(self, invoice_id: str, due_date: date, settled_date: date | None, paid: bool) -> None:
        old = self._by_id.pop(invoice_id, None)
        if old is not None:
            del self._keys[bisect.bisect_left(self._keys, (old.settled_date, invoice_id))]
        if paid and settled_date is not None:
            self._by_id[invoice_id] = Settled(invoice_id, due_date, settled_date)
            bisect.insort(self._keys, (settled_date, invoice_id))

    def between(self, after: date, until: date) -> list[Settled]:
        """Settled after ``after`` and by ``until``, oldest first."""
        low = bisect.bisect_left(self._keys, (after + timedelta(days=1), ""))
        high = bisect.bisect_left(self._keys, (until + timedelta(days=1), ""))
        return [self._by_id[key[1]] for key in self._keys[low:high]]

    def last(self, count: int, until: date) -> list[Settled]:
        """The last ``count`` settled by ``until``, oldest first."""
        high = bisect.bisect_left(self._keys, (until + timedelta(days=1), ""))
        return [self._by_id[key[1]] for key in self._keys[max(0, high - count):high]]


@dataclass(frozen=True, slots=True)
class Situation:
    """What the signals read of one customer on ``day``."""

    day: date
    settled: SettledIndex
    broken: Sequence[dict[str, str]]  # {kind: promise|plan, id, broken_on}
    ratings: Sequence[tuple[Rating, Rating]]  # (previous, latest) per provider
    rating_model: RatingModel
    grade: str | None
    previous_grade: str | None
    utilisation: Sequence[Utilisation]
    securities: Sequence[Ending]


def evidence(rule: WarningRule, s: Situation) -> dict[str, Any] | None:
    """What trips ``rule`` in situation ``s`` (JSON-native), or None."""
    match rule:
        case LatePaymentsRule():
            late = [i for i in s.settled.between(s.day - timedelta(days=rule.within_days), s.day)
                    if i.days_late > rule.late_after_days]
            if len(late) < rule.min_invoices:
                return None
            return {"count": len(late), "within_days": rule.within_days, "invoices": [
                {"invoice_id": i.invoice_id, "due_date": i.due_date.isoformat(),
                 "settled_date": i.settled_date.isoformat(), "days_late": i.days_late} for i in late]}
        case DaysLateTrendRule():
            n = rule.invoices
            settled = s.settled.last(2 * n, s.day)
            if len(settled) < 2 * n:
                return None
            earlier, recent = settled[:n], settled[n:]
            recent_mean = _mean(i.days_late for i in recent)
            earlier_mean = _mean(i.days_late for i in earlier)
            if recent_mean - earlier_mean < rule.min_increase_days:
                return None
            return {"recent_mean_days_late": str(recent_mean), "earlier_mean_days_late": str(earlier_mean),
                    "increase_days": str(recent_mean - earlier_mean),
                    "recent": [i.invoice_id for i in recent], "earlier": [i.invoice_id for i in earlier]}
        case BrokenPromiseRule():
            since = s.day - timedelta(days=rule.within_days)
            broken = [b for b in s.broken if since < date.fromisoformat(b["broken_on"]) <= s.day]
            return {"broken": sorted(broken, key=lambda b: (b["broken_on"], b["id"]))} if broken else None
        case RatingDowngradeRule():
            worse = []
            for previous, latest in s.ratings:
                before, now = previous.intensity(s.rating_model), latest.intensity(s.rating_model)
                if before is not None and now is not None and now > before and latest.report_date <= s.day:
                    worse.append({"provider": latest.provider,
                                  "previous": {"grade": previous.grade, "score": str(previous.score),
                                               "report_date": previous.report_date.isoformat()},
                                  "latest": {"grade": latest.grade, "score": str(latest.score),
                                             "report_date": latest.report_date.isoformat()}})
            return {"downgrades": worse} if worse else None
        case RiskGradeWorseRule():
            if s.grade is None or s.previous_grade is None or GRADES.index(s.grade) <= GRADES.index(
                    s.previous_grade):
                return None
            return {"grade": s.grade, "previous_grade": s.previous_grade}
        case LimitUtilisationRule():
            over = [{"currency": u.currency, "exposure": str(u.exposure), "limit": str(u.limit),
                     "percent": str((u.exposure * 100 / u.limit).quantize(_CENT, rounding=ROUND_HALF_UP))}
                    for u in s.utilisation
                    if u.limit > ZERO and u.exposure * 100 >= u.limit * rule.min_percent]
            return {"currencies": over, "min_percent": str(rule.min_percent)} if over else None
        case SecurityExpiringRule():
            horizon = s.day + timedelta(days=rule.within_days)
            ending = [{"security_id": e.security_id, "kind": e.kind, "valid_until": e.valid_until.isoformat(),
                       "days_left": (e.valid_until - s.day).days}
                      for e in s.securities if s.day <= e.valid_until <= horizon]
            return {"securities": ending} if ending else None
    return None  # pragma: no cover - every rule is matched above


def _mean(values: Iterable[int]) -> Decimal:
    numbers = list(values)
    return (Decimal(sum(numbers)) / Decimal(len(numbers))).quantize(_CENT, rounding=ROUND_HALF_UP)
