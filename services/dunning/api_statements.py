"""The dunning service's statements of account over REST: statement runs (``dunning:write``),
the customer's answer to a statement (``dunning:write``), a customer's statements
(``dunning:read``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.dunning import queries
from services.dunning.api import AppDep, read_models
from services.dunning.api_answers import ConfirmationOut, StatementRunOut, StatementsOut
from services.dunning.domain.statements import Response
from services.dunning.statement_runs import StatementRunner
from shared.auth import DunningReader, DunningWriter
from shared.business_dates import given_or_today, not_ahead_of_clock
from shared.dates import BusinessDate
from shared.dependencies import EngineDep, WriterDep, from_state
from shared.openapi import answers_with
from shared.problems import Problem, field_problem, not_found
from shared.scheduling import ReadModelsBehind
from shared.values import NO_NUL, RequestAmount, RequestId

router = APIRouter(tags=["statements"])
StatementRunnerDep = Annotated[StatementRunner, Depends(from_state("statement_runner"))]


class StatementRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: BusinessDate = Field(description="the business date the statements are made on")
    period_from: BusinessDate | None = Field(
        default=None,
        description="first day of the period (to as_of); default: the calendar month before as_of")


class ConfirmationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement_id: RequestId
    response: Response
    balance: RequestAmount | None = Field(default=None, description="the balance the customer sees; "
                                          "required when disputed")
    note: str = Field(default="", max_length=2000, pattern=NO_NUL)
    responded_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")


@router.post("/statement-runs", response_model=None, responses=answers_with(StatementRunOut))
async def post_statement_run(body: StatementRunIn, request: Request, runner: StatementRunnerDep,
                             _: DunningWriter) -> dict[str, Any]:
    """Send statements of account: one per customer and currency with anything open or any
    movement in the period; a date run before answers the same statements and sends nothing."""
    not_ahead_of_clock(body.as_of, "body.as_of", request)
    if body.period_from is not None and body.period_from > body.as_of:
        raise field_problem("body.period_from", f"must not be after as_of ({body.as_of})")
    try:
        return await runner.statements(body.as_of, body.period_from)
    except ReadModelsBehind as error:
        raise Problem(503, "read-models-behind", detail=str(error), headers={"Retry-After": "5"}) from None


@router.post("/customers/{customer_id}/confirmations", status_code=201, response_model=None,
             responses=answers_with(ConfirmationOut, 201))
async def post_confirmation(customer_id: str, body: ConfirmationIn, request: Request, app: AppDep,
                            writer: WriterDep, principal: DunningWriter) -> dict[str, Any]:
    """The customer's answer to a statement: its balance confirmed, or disputed with the
    balance it sees and a note."""
    responded_on = given_or_today(body.responded_on, "body.responded_on", request)
    answer = await writer.run(app.respond_to_statement, customer_id, body.statement_id,
                              response=body.response, balance=body.balance, note=body.note,
                              responded_on=responded_on, actor=principal.identity)
    if answer is None:
        raise not_found("customer", customer_id)
    return answer


@router.get("/customers/{customer_id}/statements", response_model=None, responses=answers_with(StatementsOut))
async def get_statements(customer_id: str, engine: EngineDep, _: DunningReader) -> dict[str, Any]:
    """The statements sent to the customer, the earliest first, each with its answer if any."""
    return {"customer_id": customer_id,
            "statements": await read_models(engine, queries.statements_of, customer_id=customer_id)}
