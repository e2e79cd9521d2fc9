"""The dunning service's payment plans over REST: asked for with ``dunning:write``, approved or
rejected with ``dunning:approve`` by someone else (four eyes), read with ``dunning:read``.

A plan is found by its id through the read models; one asked for a moment ago and not yet
projected is found once the projector has caught up (read your own writes).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.dunning import queries
from services.dunning.api import AppDep, RunnerDep, read_models
from services.dunning.api_answers import PlanOut, PlansOut
from services.dunning.domain.plans import Instalment, PlanStatus
from shared.auth import DunningApprover, DunningReader, DunningWriter
from shared.business_dates import given_or_today
from shared.dates import BusinessDate
from shared.dependencies import EngineDep, WriterDep
from shared.openapi import answers_with
from shared.problems import Problem, field_problem, not_found
from shared.scheduling import ReadModelsBehind
from shared.values import CURRENCY_PATTERN, NO_NUL, RequestAmount, RequestId

router = APIRouter(tags=["payment plans"])
PlanId = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
MAX_INSTALMENTS = 120


class InstalmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_date: BusinessDate
    amount: RequestAmount


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: RequestId
    currency: str = Field(pattern=CURRENCY_PATTERN)
    invoice_ids: list[RequestId] | None = Field(
        default=None, max_length=1000, description="default: every open overdue invoice of the currency")
    instalments: list[InstalmentIn] = Field(max_length=MAX_INSTALMENTS,
                                            description="in date order, adding up to the covered open amount")
    requested_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")
    reason: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")


class RejectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    rejected_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")


@router.post("/customers/{customer_id}/payment-plans", status_code=201, response_model=None,
             responses=answers_with(PlanOut, 201))
async def post_plan(customer_id: str, body: PlanIn, request: Request, app: AppDep, engine: EngineDep,
                    runner: RunnerDep, writer: WriterDep, principal: DunningWriter) -> dict[str, Any]:
    """Ask for a payment plan: its invoices are not dunned while it is requested or active."""
    requested_on = given_or_today(body.requested_on, "body.requested_on", request)
    owner = await _owner(body.plan_id, engine, runner, required=False)
    if owner is not None and owner != customer_id:
        raise field_problem("body.plan_id", f"plan {body.plan_id} belongs to another customer",
                            status=409, slug="plan-conflict")
    plan = await writer.run(
        app.request_plan, customer_id, plan_id=body.plan_id, currency=body.currency,
        invoice_ids=body.invoice_ids, requested_on=requested_on, reason=body.reason,
        instalments=[Instalment(i.due_date, i.amount) for i in body.instalments], actor=principal.identity)
    if plan is None:
        raise not_found("customer", customer_id)
    return plan


async def _owner(plan_id: str, engine: Any, runner: Any, *, required: bool = True) -> str | None:
    """The customer of a plan, waiting for the projector when it is not in the read models yet;
    a plan not found is a 404 (``required``) or None."""
    owner = await read_models(engine, queries.plan_customer, plan_id)
    if owner is None:
        try:
            await runner.caught_up()
        except ReadModelsBehind:
            raise Problem(503, "read-models-behind", detail="the read models are catching up",
                          headers={"Retry-After": "5"}) from None
        owner = await read_models(engine, queries.plan_customer, plan_id)
    if owner is None and required:
        raise not_found("payment plan", plan_id)
    return None if owner is None else str(owner)


@router.post("/payment-plans/{plan_id}/approve", response_model=None, responses=answers_with(PlanOut))
async def approve_plan(plan_id: PlanId, body: ApprovalIn, request: Request, app: AppDep, engine: EngineDep,
                       runner: RunnerDep, writer: WriterDep, principal: DunningApprover) -> dict[str, Any]:
    """Agree a requested plan; 403 when the approver is the one who asked for it."""
    approved_on = given_or_today(body.approved_on, "body.approved_on", request)
    owner = str(await _owner(plan_id, engine, runner))
    plan = await writer.run(app.approve_plan, owner, plan_id, approved_on=approved_on,
                            actor=principal.identity)
    assert plan is not None
    return plan


@router.post("/payment-plans/{plan_id}/reject", response_model=None, responses=answers_with(PlanOut))
async def reject_plan(plan_id: PlanId, body: RejectionIn, request: Request, app: AppDep, engine: EngineDep,
                      runner: RunnerDep, writer: WriterDep, principal: DunningApprover) -> dict[str, Any]:
    """Refuse a requested plan: its invoices are dunned again from the next run."""
    rejected_on = given_or_today(body.rejected_on, "body.rejected_on", request)
    owner = str(await _owner(plan_id, engine, runner))
    plan = await writer.run(app.reject_plan, owner, plan_id, reason=body.reason, rejected_on=rejected_on,
                            actor=principal.identity)
    assert plan is not None
    return plan


@router.get("/payment-plans/{plan_id}", response_model=None, responses=answers_with(PlanOut))
async def get_plan(plan_id: PlanId, app: AppDep, engine: EngineDep, runner: RunnerDep,
                   _: DunningReader) -> dict[str, Any]:
    """A plan as it stands: its status, instalments and what is paid of each."""
    owner = str(await _owner(plan_id, engine, runner))

    def read() -> dict[str, Any] | None:
        account = app.account(owner, fresh=True)
        return None if account is None else account.plan_view(plan_id)

    plan = await asyncio.to_thread(read)
    if plan is None:
        raise not_found("payment plan", plan_id)
    return plan


@router.get("/customers/{customer_id}/payment-plans", response_model=None, responses=answers_with(PlansOut))
async def get_customer_plans(customer_id: str, app: AppDep, _: DunningReader) -> dict[str, Any]:
    """A customer's plans, the earliest asked for first."""

    def read() -> list[dict[str, Any]] | None:
        account = app.account(customer_id, fresh=True)
        if account is None:
            return None
        return [account.plan_view(plan_id) or {} for plan_id in account.plans]

    plans = await asyncio.to_thread(read)
    if plans is None:
        raise not_found("customer", customer_id)
    return {"customer_id": customer_id, "plans": plans}


@router.get("/payment-plans", response_model=None, responses=answers_with(PlansOut))
async def list_plans(
    engine: EngineDep, _: DunningReader,
    status: Annotated[PlanStatus | None, Query(description="e.g. requested: awaiting a decision")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Plans across customers (as the read models hold them), the earliest asked for first."""
    return {"plans": await read_models(engine, queries.find_plans, status=status, limit=limit)}
