"""The credit service's REST surface: checks, reviews, limits, holds, the credit view, audit, health."""

from __future__ import annotations

import asyncio
import email.message
import json
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

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
from services.credit.checks import CheckDesk
from services.credit.domain import (
    ConflictingCheck,
    CreditError,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    UnknownHold,
)
from services.credit.domain.registry import ReviewOutOfOrder
from services.credit.reviews import ReviewRunner
from shared.auth import BEARER_SECURITY, CreditOverrider, CreditReader, CreditWriter, authorize
from shared.business_dates import not_ahead_of_clock, today_utc
from shared.dates import BusinessDate
from shared.db import BIGINT_MAX
from shared.dependencies import EngineDep, WriterDep, from_state
from shared.money import Amount
from shared.openapi import answers_with
from shared.problems import Problem, not_found
from shared.scheduling import ReadModelsBehind
from shared.tokens import Scopes

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
# No NUL character: PostgreSQL refuses one in text, and the read models would stop at it.
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Text = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]

AppDep = Annotated[CreditApplication, Depends(from_state("credit"))]
DeskDep = Annotated[CheckDesk, Depends(from_state("desk"))]
RunnerDep = Annotated[ReviewRunner, Depends(from_state("runner"))]

router = APIRouter()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _field_problem(status: int, slug: str, field: str, message: str) -> Problem:
    return Problem(status, slug, detail=f"{field}: {message}", errors=[{"field": field, "message": message}])


def refused(error: CreditError, fields: dict[str, str], default: str) -> Problem:
    """A domain refusal as a problem naming the field (the message starts with it, e.g. ``amount: ...``)."""
    message = str(error)
    name = message.split(":", 1)[0].strip()
    field = fields.get(name, default)
    if isinstance(error, ConflictingCheck):
        return _field_problem(409, "conflicting-check", "body.order_id", message)
    if isinstance(error, UnknownHold):
        return _field_problem(404, "not-found", field, message)
    if isinstance(error, HoldNotActive):
        return _field_problem(409, "hold-not-active", field, message)
    if isinstance(error, ReviewOutOfOrder):
        return _field_problem(409, "review-out-of-order", "body.as_of", message)
    if isinstance(error, InvalidAmount | InvalidCommand):
        return _field_problem(422, "validation-error", field, message.split(":", 1)[-1].strip())
    return _field_problem(409, "credit-refused", field, message)


# --------------------------------------------------------------------------- checks


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Id
    order_id: Id = Field(description="the same order checked again gets the same answer")
    amount: Amount = Field(description="decimal string, e.g. \"1250.00\"")
    currency: Currency
    on: BusinessDate | None = Field(default=None,
                                    description="business date of the check; default today (UTC)")


CHECK_FIELDS = {"amount": "body.amount", "currency": "body.currency", "order_id": "body.order_id"}


# The check route reads its body and checks its scope itself: FastAPI's body parameter and
# scope dependency cost about 45 µs a request, more than deciding and saving the check
# (BENCHMARKS.md, credit checks). Same model, same errors in the same order (JSON syntax, then
# the token, then the fields); the OpenAPI document still shows the body and the scheme.
_CHECK_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True,
                    "content": {"application/json": {"schema": CheckIn.model_json_schema()}}},
    "security": BEARER_SECURITY,
}


@lru_cache(maxsize=64)
def _is_json(content_type: str) -> bool:
    """FastAPI's test of a JSON media type (``application/json`` or ``application/*+json``)."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


_NO_BODY: Any = object()


def _body(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI hands it to the model: ``_NO_BODY`` when empty, the raw bytes unless
    the media type is JSON, else the parsed JSON (a syntax error is a 422 naming ``body``)."""
    if not raw:
        return _NO_BODY
    if content_type != "application/json" and (content_type is None or not _is_json(content_type)):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses and the standard library takes (NaN, a BOM, huge integers)
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", error.pos),
                                       "msg": "JSON decode error", "input": {}, "ctx": {"error": error.msg}}],
                                     body=error.doc) from None
    except ValueError:  # not decodable as text at all
        raise HTTPException(400, "There was an error parsing the body") from None


def _check_in(body: Any) -> CheckIn:
    if body is _NO_BODY:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    try:
        return CheckIn.model_validate(body, from_attributes=True)  # as FastAPI validates a body
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()],
                                     body=body) from None


async def read_check(request: Request) -> CheckIn:
    """A credit-check request's body, from a caller with ``credit:check`` (else the 401/403/422
    problem FastAPI's body parameter and ``CreditChecker`` would give)."""
    body = _body(await request.body(), request.headers.get("content-type"))
    authorize(request, Scopes.CREDIT_CHECK)
    return _check_in(body)


@router.post("/credit-checks", tags=["checks"], openapi_extra=_CHECK_OPENAPI,
             responses=answers_with(CheckOut))
async def post_credit_check(request: Request) -> Response:
    """``{decision: approve|hold|review, available_credit, exposure, limit, reasons, ...}``; an approval
    reserves the amount until the order's invoice arrives (``attributes.order_id``) or it expires.

    Body: ``CheckIn``; scope ``credit:check``."""
    check = await read_check(request)
    on = not_ahead_of_clock(check.on, "body.on", request) if check.on else today_utc()
    desk: CheckDesk = request.app.state.desk
    try:
        answer = await desk.check(check.customer_id, check.order_id, check.amount, check.currency, on)
    except CreditError as error:
        raise refused(error, CHECK_FIELDS, "body") from None
    return _json(answer)


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
    except ReviewOutOfOrder as error:
        raise refused(error, {}, "body.as_of") from None
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
        "risk_grade": risk.get("grade"), "risk_score": risk.get("score"),
        "risk_factors": risk.get("factors", []),
        "active_holds": view["holds"],
    }


@router.get("/customers/{customer_id}/credit", tags=["customers"], responses=answers_with(CreditViewOut))
async def get_customer_credit(
    customer_id: str, app: AppDep, _: CreditReader,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$",
                                          description="the currency of the flat figures")] = None,
    as_of: Annotated[BusinessDate | None, Query(description="also score the risk as of this date")] = None,
) -> Response:
    """Limit, exposure and available credit (per currency under ``positions``), the risk grade
    and score with its factors as the last review recorded them, active holds, reservations."""

    def read() -> dict[str, Any] | None:
        account = app.account(customer_id, fresh=True)
        return None if account is None else account.view(as_of, app.rules)

    view = await asyncio.to_thread(read)
    if view is None:
        raise not_found("customer", customer_id)
    return _json({**_headline(view, currency), **view})


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: Currency
    amount: Amount
    expires_on: BusinessDate | None = Field(default=None, description="the limit lapses after this date")
    review_on: BusinessDate | None = Field(default=None, description="flagged for review from this date")


@router.put("/customers/{customer_id}/credit-limit", tags=["customers"], responses=answers_with(LimitOut))
async def put_credit_limit(customer_id: Id, body: LimitIn, app: AppDep, writer: WriterDep,
                           principal: CreditWriter) -> Response:
    """Set a currency's limit (audited with the caller's identity); answers that currency's position."""
    try:
        position = await writer.run(app.set_limit, customer_id, body.currency, body.amount,
                                    principal.identity, body.expires_on, body.review_on)
    except CreditError as error:
        raise refused(error, {"amount": "body.amount", "currency": "body.currency"}, "body") from None
    return _json({"customer_id": customer_id, "set_by": principal.identity, **position})


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


@router.post("/customers/{customer_id}/holds", status_code=201, tags=["holds"],
             responses=answers_with(HoldPlacedOut, 201))
async def post_hold(customer_id: Id, body: HoldIn, app: AppDep, writer: WriterDep,
                    principal: CreditOverrider) -> Response:
    """Put a customer on hold by hand (one manual hold at a time: placed again, the active one
    is answered)."""
    try:
        hold = await writer.run(app.place_hold, customer_id, principal.identity, body.reason)
    except CreditError as error:
        raise refused(error, {"reason": "body.reason"}, "body") from None
    return _json({"customer_id": customer_id, **hold}, status=201)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text
    customer_id: Id | None = Field(default=None, description="optional: whose hold it is")


@router.post("/holds/{hold_id}/release", tags=["holds"], responses=answers_with(ReleaseOut))
async def post_release(hold_id: Id, body: ReleaseIn, app: AppDep, engine: EngineDep, writer: WriterDep,
                       runner: RunnerDep, principal: CreditOverrider) -> Response:
    """Release a hold (audited with the caller's identity). Releasing an automatic hold
    overrides its reasons until they stop holding."""
    customer_id = body.customer_id or await _hold_customer(engine, runner, hold_id)
    if customer_id is None:
        raise not_found("hold", hold_id)
    try:
        release = await writer.run(app.release_hold, customer_id, hold_id, principal.identity, body.reason)
    except CreditError as error:
        raise refused(error, {"reason": "body.reason"}, "path.hold_id") from None
    if release is None:
        raise not_found("hold", hold_id)
    return _json(release)


async def _hold_customer(engine: Engine, runner: ReviewRunner, hold_id: str) -> str | None:
    """Whose hold it is, from the read model; a hold just placed may not be projected yet."""

    def lookup() -> str | None:
        with engine.connect() as conn:
            return queries.hold_customer(conn, hold_id)

    found = await asyncio.to_thread(lookup)
    if found is None:
        try:
            await asyncio.wait_for(runner.caught_up(), timeout=10)
        except (TimeoutError, ReadModelsBehind):
            raise Problem(503, "read-models-behind", detail="the holds are not projected yet; retry",
                          headers={"Retry-After": "2"}) from None
        found = await asyncio.to_thread(lookup)
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
