"""REST for securities (debt protection records), ``credit:write``: register one for a customer,
release it, draw on it. Each is recorded with the caller's identity; the credit view
(``GET /customers/{id}/credit``) shows them with their cover."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from services.credit import queries
from services.credit.api import AppDep, RunnerDep, _json, owners
from services.credit.api_answers import SecurityOut
from services.credit.domain.securities import KINDS, security_record
from services.credit.reviews import ReviewRunner
from shared.auth import CreditWriter
from shared.business_dates import given_or_today
from shared.dates import BusinessDate
from shared.dependencies import EngineDep, WriterDep
from shared.openapi import answers_with
from shared.problems import Problem, not_found
from shared.values import RequestAmount, RequestCurrency, RequestId, RequestText

router = APIRouter(tags=["securities"])

Kind = Literal[KINDS]  # type: ignore[valid-type]  # (the tuple of kinds, one source)
Percent = Annotated[Decimal, Field(gt=0, le=100, max_digits=7, decimal_places=4)]


class SecurityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    security_id: RequestId
    kind: Kind
    currency: RequestCurrency | None = Field(default=None, description="required for a kind with cover")
    amount: RequestAmount | None = Field(default=None, description="what it secures at most")
    coverage_percent: Percent | None = Field(
        default=None, description="credit_insurance only: the insured share of the exposure")
    valid_from: BusinessDate
    valid_until: BusinessDate | None = Field(default=None, description="the last day it counts")
    issuer: RequestText | None = None
    reference: RequestText | None = None
    note: RequestText | None = None
    on: BusinessDate | None = Field(default=None, description="the business day it is registered on; "
                                    "default today (the hold rules judge its cover on that day)")


@router.post("/customers/{customer_id}/securities", status_code=201,
             responses=answers_with(SecurityOut, 201))
async def post_security(customer_id: RequestId, body: SecurityIn, request: Request, app: AppDep,
                        writer: WriterDep, principal: CreditWriter) -> Response:
    """Register a security. The same registration again is answered as it stands; other content
    under a known id is 409. Cover per ``README``: its amount (less draws) while valid, for
    credit insurance at most its percentage of the exposure; contracts and powers of attorney
    are kept as documents without cover."""
    record = security_record(**body.model_dump(exclude={"on"}))
    on = given_or_today(body.on, "body.on", request)
    security = await writer.run(app.register_security, customer_id, record, principal.identity, on)
    return _json({"customer_id": customer_id, **security}, status=201)


class ReleaseSecurityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: RequestText
    on: BusinessDate | None = Field(default=None,
                                    description="from this day it covers nothing; default today")
    customer_id: RequestId | None = Field(default=None, description="optional: whose security it is")


@router.post("/securities/{security_id}/release", responses=answers_with(SecurityOut))
async def post_security_release(security_id: RequestId, body: ReleaseSecurityIn, request: Request,
                                app: AppDep, engine: EngineDep, writer: WriterDep, runner: RunnerDep,
                                principal: CreditWriter) -> Response:
    """Give a security back (audited with the caller's identity): it covers nothing from ``on``."""
    on = given_or_today(body.on, "body.on", request)
    customer_id = body.customer_id or await _security_customer(engine, runner, security_id)
    released = await writer.run(app.release_security, customer_id, security_id, body.reason, on,
                                principal.identity)
    if released is None:
        raise not_found("security", security_id)
    return _json({"customer_id": customer_id, **released})


class DrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: RequestAmount
    drawn_on: BusinessDate
    draw_id: RequestId | None = Field(default=None,
                                      description="optional: the same draw sent again counts once")
    customer_id: RequestId | None = Field(default=None, description="optional: whose security it is")


@router.post("/securities/{security_id}/draw", responses=answers_with(SecurityOut))
async def post_security_draw(security_id: RequestId, body: DrawIn, request: Request, app: AppDep,
                             engine: EngineDep, writer: WriterDep, runner: RunnerDep,
                             principal: CreditWriter) -> Response:
    """Draw on a security (the guarantor paid, the note was cashed): what is left of it covers
    less from ``drawn_on``; more than is left is 422."""
    drawn_on = given_or_today(body.drawn_on, "body.drawn_on", request)
    customer_id = body.customer_id or await _security_customer(engine, runner, security_id)
    drawn = await writer.run(app.draw_security, customer_id, security_id, body.amount, drawn_on,
                             principal.identity, body.draw_id)
    if drawn is None:
        raise not_found("security", security_id)
    return _json({"customer_id": customer_id, **drawn})


async def _security_customer(engine: Engine, runner: ReviewRunner, security_id: str) -> str:
    """Whose security it is (an id two customers use needs ``customer_id``)."""
    found = await owners(engine, runner, lambda conn: queries.security_customers(conn, security_id),
                         "securities")
    if not found:
        raise not_found("security", security_id)
    if len(found) > 1:
        raise Problem(409, "ambiguous-security",
                      detail=f"customers {', '.join(found)} each have a security {security_id}: "
                             f"name the customer in body.customer_id")
    return found[0]
