"""The credit API's answers as its OpenAPI document declares them.

The routes render their answers themselves (orjson, see ``api``); these models only
describe them, so that a client and the schema fuzzer know every figure's type: money is a
decimal string, dates are ISO dates, instants carry their offset. More members than listed
may come (``extra="allow"``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.values import AnswerAmount


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class PositionOut(_Answer):
    currency: str
    open_receivables: AnswerAmount
    reserved: AnswerAmount
    exposure: AnswerAmount
    limit: AnswerAmount | None
    available: AnswerAmount | None
    secured_amount: AnswerAmount | None = None  # (the credit view's: the securities' cover)
    unsecured_exposure: AnswerAmount | None = None


class CheckOut(_Answer):
    order_id: str
    customer_id: str
    currency: str
    amount: AnswerAmount
    on: date
    decision: Literal["approve", "hold", "review"]
    available_credit: AnswerAmount | None
    exposure: AnswerAmount
    limit: AnswerAmount | None
    reasons: list[str]
    secured_amount: AnswerAmount | None = None
    deposit_amount: AnswerAmount | None = None


class RatingOut(_Answer):
    customer_id: str
    provider: str
    score: str
    grade: str
    probability_of_default: str | None
    report_date: date
    valid_until: date | None


class SecurityOut(_Answer):
    security_id: str
    customer_id: str
    kind: str
    currency: str | None
    amount: AnswerAmount | None
    coverage_percent: str | None
    valid_from: date
    valid_until: date | None
    released_on: date | None
    drawn: AnswerAmount
    status: Literal["pending", "active", "expired", "released", "document"]


class HoldOut(_Answer):
    hold_id: str
    kind: str
    reasons: list[str]
    placed_by: str
    status: str
    effective_date: date | None = None


class HoldRowOut(HoldOut):
    customer_id: str
    placed_at: datetime | None
    released_at: datetime | None


class HoldsOut(_Answer):
    holds: list[HoldRowOut]


class HoldPlacedOut(HoldOut):
    customer_id: str


class ReleaseOut(_Answer):
    hold_id: str
    customer_id: str
    released_by: str
    reason: str
    positions: list[PositionOut]


class LimitOut(PositionOut):
    customer_id: str
    set_by: str


class CreditViewOut(_Answer):
    customer_id: str
    currency: str | None
    limit: AnswerAmount | None
    exposure: AnswerAmount | None
    available: AnswerAmount | None
    risk_grade: str | None
    risk_score: str | None
    risk_factors: list[dict[str, Any]]
    active_holds: list[HoldOut]
    on_hold: bool
    positions: list[PositionOut]


class ReviewOut(_Answer):
    review_id: str
    as_of: date
    repeat: bool


class ReviewsOut(_Answer):
    reviews: list[dict[str, Any]]


class AuditEntryOut(_Answer):
    version: int
    recorded_at: datetime
    type: str
    by: str | None
    data: dict[str, Any]


class AuditOut(_Answer):
    customer_id: str
    events: list[AuditEntryOut]
    next_cursor: int | None



class WarningOut(_Answer):
    warning_id: str
    customer_id: str
    signal: str
    severity: Literal["low", "medium", "high"]
    status: Literal["open", "cleared"]
    evidence: dict[str, Any]
    raised_on: date
    cleared_on: date | None
    acknowledgements: list[dict[str, Any]]


class WarningsOut(_Answer):
    warnings: list[WarningOut]


class WatchEntryOut(_Answer):
    customer_id: str
    worst_severity: Literal["medium", "high"]
    risk_grade: str | None
    risk_score: str | None
    on_hold: bool
    positions: list[dict[str, Any]]
    warnings: list[WarningOut]


class WatchlistOut(_Answer):
    customers: list[WatchEntryOut]
