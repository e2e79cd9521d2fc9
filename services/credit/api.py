"""The credit service's REST surface: checks, reviews, limits, holds, the credit view, audit, health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from services.credit import queries
from services.credit.api_answers import (
    AuditOut,
    CheckOut,
    CreditViewOut,
    HoldPlacedOut,
    HoldsOut,
    LimitOut,
    ReleaseOut,
    ReviewOut,
    ReviewsOut,
)
from services.credit.application import CreditApplication
from services.credit.check_desk import CheckDesk
from services.credit.domain import (
    ConflictingCheck,
    CreditError,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    UnknownHold,
)
from services.credit.domain.errors import ConflictingSecurity, UnknownSecurity, UnknownWarning
from services.credit.domain.registry import ReviewOutOfOrder
from services.credit.reviews import ReviewRunner
from shared.auth import CreditChecker, CreditOverrider, CreditReader, CreditWriter
from shared.business_dates import given_or_today, not_ahead_of_clock, today_utc
from shared.dates import BusinessDate
from shared.db import BIGINT_MAX
from shared.dependencies import EngineDep, WriterDep, from_state
from shared.openapi import answers_with
from shared.problems import DomainProblems, Problem, not_found
from shared.scheduling import ReadModelsBehind
from shared.values import CURRENCY_PATTERN, RequestAmount, RequestCurrency, RequestId, RequestText

AppDep = Annotated[CreditApplication, Depends(from_state("credit"))]
DeskDep = Annotated[CheckDesk, Depends(from_state("desk"))]
RunnerDep = Annotated[ReviewRunner, Depends(from_state("runner"))]

router = APIRouter()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


# The one mapping of the credit domain's refusals to problems (installed on the app by
# ``services.credit.service``); a field is named as the request names it.
CREDIT_PROBLEMS = DomainProblems(
    kinds={
        CreditError: (409, "credit-refused"),
        InvalidAmount: (422, "validation-error"),
        InvalidCommand: (422, "validation-error"),
        ConflictingCheck: (409, "conflicting-check"),
        UnknownHold: (404, "not-found"),
        UnknownSecurity: (404, "not-found"),
        ConflictingSecurity: (409, "conflicting-security"),
        UnknownWarning: (404, "not-found"),
        HoldNotActive: (409, "hold-not-active"),
        ReviewOutOfOrder: (409, "review-out-of-order"),
    },
    fields={"amount": "body.amount", "currency": "body.currency", "order_id": "body.order_id",
            "reason": "body.reason", "as_of": "body.as_of", "hold_id": "path.hold_id",
            "security": "path.security_id", "security_id": "body.security_id", "kind": "body.kind",
            "coverage_percent": "body.coverage_percent", "valid_until": "body.valid_until",
            "drawn_on": "body.drawn_on", "warning": "path.warning_id", "note": "body.note"},
)


# --------------------------------------------------------------------------- checks


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: RequestId
    order_id: RequestId = Field(description="the same order checked again gets the same answer")
    amount: RequestAmount = Field(description="decimal string, e.g. \"1250.00\"")
    currency: RequestCurrency
    on: BusinessDate | None = Field(default=None,
                                    description="business date of the check; default today (UTC)")


@router.post("/credit-checks", tags=["checks"], responses=answers_with(CheckOut))
async def post_credit_check(check: CheckIn, request: Request, desk: DeskDep, _: CreditChecker) -> Response:
    """``{decision: approve|hold|review, available_credit, exposure, limit, reasons, ...}``; an approval
    reserves the amount until the order's invoice arrives (``attributes.order_id``) or it expires."""
    on = given_or_today(check.on, "body.on", request)
    return _json(await desk.check(check.customer_id, check.order_id, check.amount, check.currency, on))


# --------------------------------------------------------------------------- reviews


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: BusinessDate = Field(description="the business date the review is for")


@router.post("/reviews", tags=["reviews"], responses=answers_with(ReviewOut))
async def post_review(body: ReviewIn, request: Request, runner: RunnerDep, _: CreditWriter) -> Response:
    """The credit review of a date; the same date again answers its summary and changes nothing;
    a date before the latest review is refused (409), one beyond today (plus the tolerance) too (422)."""
    not_ahead_of_clock(body.as_of, "body.as_of", request)
    try:
        return _json(await runner.run(body.as_of))
    except ReadModelsBehind as error:
        raise Problem(503, "read-models-behind", detail=str(error), headers={"Retry-After": "5"}) from None


@router.get("/reviews", tags=["reviews"], responses=answers_with(ReviewsOut))
async def get_reviews(app: AppDep, _: CreditReader) -> Response:
    registry = await asyncio.to_thread(app.review_registry)
    return _json({"reviews": [registry.reviews[day] for day in sorted(registry.reviews)]})


# --------------------------------------------------------------------------- customers


def _headline(view: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """The contract's flat figures: of ``currency``, else of the only currency there is."""
    figures = view["positions"]
    chosen = next((f for f in figures if f["currency"] == currency), None) if currency else (
        figures[0] if len(figures) == 1 else None)
    risk = view["risk"] or {}
    return {
        "currency": chosen["currency"] if chosen else currency,
        "limit": chosen["limit"] if chosen else None,
        "exposure": chosen["exposure"] if chosen else None,
        "available": chosen["available"] if chosen else None,
        "secured_amount": chosen["secured_amount"] if chosen else None,
        "unsecured_exposure": chosen["unsecured_exposure"] if chosen else None,
        "risk_grade": risk.get("grade"), "risk_score": risk.get("score"),
        "risk_factors": risk.get("factors", []),
        "active_holds": view["holds"],
    }


@router.get("/customers/{customer_id}/credit", tags=["customers"], responses=answers_with(CreditViewOut))
async def get_customer_credit(
    customer_id: str, app: AppDep, _: CreditReader,
    currency: Annotated[str | None, Query(pattern=CURRENCY_PATTERN,
                                          description="the currency of the flat figures")] = None,
    as_of: Annotated[BusinessDate | None, Query(description="also score the risk as of this date")] = None,
) -> Response:
    """Limit, exposure and available credit (per currency under ``positions``), the risk grade
    and score with its factors as the last review recorded them, active holds, reservations."""

    def read() -> dict[str, Any] | None:
        account = app.account(customer_id, fresh=True)
        return None if account is None else account.view(as_of, app.rules, cover_on=as_of or today_utc())

    view = await asyncio.to_thread(read)
    if view is None:
        raise not_found("customer", customer_id)
    return _json({**_headline(view, currency), **view})


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: RequestCurrency
    amount: RequestAmount
    expires_on: BusinessDate | None = Field(default=None, description="the limit lapses after this date")
    review_on: BusinessDate | None = Field(default=None, description="flagged for review from this date")


@router.put("/customers/{customer_id}/credit-limit", tags=["customers"], responses=answers_with(LimitOut))
async def put_credit_limit(customer_id: RequestId, body: LimitIn, app: AppDep, writer: WriterDep,
                           principal: CreditWriter) -> Response:
    """Set a currency's limit (audited with the caller's identity); answers that currency's position."""
    position = await writer.run(app.set_limit, customer_id, body.currency, body.amount,
                                principal.identity, body.expires_on, body.review_on, today_utc())
    return _json({"customer_id": customer_id, "set_by": principal.identity, **position})


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: RequestText


@router.post("/customers/{customer_id}/holds", status_code=201, tags=["holds"],
             responses=answers_with(HoldPlacedOut, 201))
async def post_hold(customer_id: RequestId, body: HoldIn, app: AppDep, writer: WriterDep,
                    principal: CreditOverrider) -> Response:
    """Put a customer on hold by hand (one manual hold at a time: placed again, the active one
    is answered)."""
    hold = await writer.run(app.place_hold, customer_id, principal.identity, body.reason)
    return _json({"customer_id": customer_id, **hold}, status=201)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: RequestText
    customer_id: RequestId | None = Field(default=None, description="optional: whose hold it is")


@router.post("/holds/{hold_id}/release", tags=["holds"], responses=answers_with(ReleaseOut))
async def post_release(hold_id: RequestId, body: ReleaseIn, app: AppDep, engine: EngineDep,
                       writer: WriterDep, runner: RunnerDep, principal: CreditOverrider) -> Response:
    """Release a hold (audited with the caller's identity). Releasing an automatic hold
    overrides its reasons until they stop holding."""
    customer_id = body.customer_id or await _hold_customer(engine, runner, hold_id)
    if customer_id is None:
        raise not_found("hold", hold_id)
    release = await writer.run(app.release_hold, customer_id, hold_id, principal.identity, body.reason)
    if release is None:
        raise not_found("hold", hold_id)
    return _json(release)


async def _hold_customer(engine: Engine, runner: ReviewRunner, hold_id: str) -> str | None:
    """Whose hold it is, from the read model; a hold just placed may not be projected yet."""
    found = await owners(engine, runner, lambda conn: queries.hold_customer(conn, hold_id), "holds")
    return found[0] if found else None


async def owners(engine: Engine, runner: ReviewRunner,
                 lookup: Callable[[Connection], str | list[str] | None], what: str) -> list[str]:
    """The customers a read-model ``lookup`` finds for an id in a route's path (a hold, a
    security, a warning). One just recorded may not be projected yet: none found, the route
    waits for the projector to catch up once (503 if it does not) and looks again."""

    def read() -> list[str]:
        with engine.connect() as conn:
            found = lookup(conn)
        return [] if found is None else [found] if isinstance(found, str) else found

    found = await asyncio.to_thread(read)
    if not found:
        try:
            await asyncio.wait_for(runner.caught_up(), timeout=10)
        except (TimeoutError, ReadModelsBehind):
            raise Problem(503, "read-models-behind", detail=f"the {what} are not projected yet; retry",
                          headers={"Retry-After": "2"}) from None
        found = await asyncio.to_thread(read)
    return found


def _hold_out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "effective_date": row["effective_date"].isoformat() if row["effective_date"] else None}


@router.get("/holds", tags=["holds"], responses=answers_with(HoldsOut))
async def get_holds(
    engine: EngineDep, _: CreditReader,
    status: Literal["active", "released"] | None = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return queries.find_holds(conn, status=status, customer_id=customer_id, limit=limit)

    return _json({"holds": [_hold_out(row) for row in await asyncio.to_thread(read)]})


# --------------------------------------------------------------------------- audit

# the library's own attributes of every event, shown in their own fields
_ENVELOPE = ("originator_id", "originator_version", "timestamp")


def _actor(kind: str, state: dict[str, Any]) -> str | None:
    """Who did it: a user (token identity), ``auto`` (the rules), ``erp``, or None for ledger facts."""
    if kind == "LimitSet":
        return str(state["limit"]["set_by"])
    if kind == "HoldPlaced":
        return str(state["hold"]["placed_by"])
    if kind == "HoldReleased":
        return str(state["release"]["released_by"])
    if kind in ("HoldReasonsChanged", "LimitExpired", "LimitReviewDue", "ReservationsExpired",
                "OverdueMarked", "RiskGradeChanged", "OverridesLapsed"):
        return "auto"
    return None


@router.get("/audit/customers/{customer_id}", tags=["audit"], responses=answers_with(AuditOut))
async def get_customer_audit(
    customer_id: str, app: AppDep, _: CreditReader,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[int | None, Query(ge=0, le=BIGINT_MAX, description="the last version seen")] = None,
) -> Response:
    """The credit account's stored events in recorded order: who did what, when, and why."""
    events = await asyncio.to_thread(app.history, customer_id, after=cursor or 0, limit=limit)
    if not events and not cursor:
        raise not_found("customer", customer_id)
    entries = []
    for event in events:
        state = event.__dict__
        kind = type(event).__name__
        entries.append({"version": event.originator_version, "recorded_at": event.timestamp, "type": kind,
                        "by": _actor(kind, state),
                        "data": {k: v for k, v in state.items() if k not in _ENVELOPE}})
    next_cursor = entries[-1]["version"] if len(entries) == limit else None
    return _json({"customer_id": customer_id, "events": entries, "next_cursor": next_cursor})
