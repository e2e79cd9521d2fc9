"""REST for early warnings and the watchlist: ``GET /warnings``, ``GET /watchlist``
(``credit:read``), ``POST /warnings/{id}/acknowledge`` (``credit:write``, audited)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from services.credit import queries
from services.credit.api import AppDep, RunnerDep, _json, owners
from services.credit.api_answers import WarningOut, WarningsOut, WatchlistOut
from services.credit.reviews import ReviewRunner
from shared.auth import CreditReader, CreditWriter
from shared.business_dates import given_or_today
from shared.dates import BusinessDate
from shared.dependencies import EngineDep, WriterDep
from shared.money import to_text
from shared.openapi import answers_with
from shared.problems import not_found
from shared.values import RequestId, RequestText

router = APIRouter(tags=["warnings"])

Limit = Annotated[int, Query(ge=1, le=10_000)]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "raised_on": row["raised_on"].isoformat(),
            "cleared_on": row["cleared_on"].isoformat() if row["cleared_on"] else None}


@router.get("/warnings", responses=answers_with(WarningsOut))
async def get_warnings(
    engine: EngineDep, _: CreditReader,
    status: Literal["open", "cleared"] | None = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    severity: Literal["low", "medium", "high"] | None = None,
    limit: Limit = 1000,
) -> Response:
    """The early warnings, newest raised first, each with the evidence that tripped it."""

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return queries.find_warnings(conn, status=status, customer_id=customer_id, severity=severity,
                                         limit=limit)

    return _json({"warnings": [_shown(row) for row in await asyncio.to_thread(read)]})


@router.get("/watchlist", responses=answers_with(WatchlistOut))
async def get_watchlist(engine: EngineDep, _: CreditReader, limit: Limit = 1000) -> Response:
    """Customers with open high or medium warnings, worst first, with their exposure, grade and
    warnings."""

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return queries.watchlist(conn, limit)

    entries = await asyncio.to_thread(read)
    return _json({"customers": [
        {**entry, "risk_score": str(entry["risk_score"]) if entry["risk_score"] is not None else None,
         "positions": [{"currency": p["currency"], "exposure": to_text(p["exposure"], p["currency"]),
                        "limit": to_text(p["limit"], p["currency"]) if p["limit"] is not None else None}
                       for p in entry["positions"]],
         "warnings": [_shown(w) for w in entry["warnings"]]}
        for entry in entries]})


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: RequestText
    on: BusinessDate | None = Field(default=None, description="default today")
    customer_id: RequestId | None = Field(default=None, description="optional: whose warning it is")


@router.post("/warnings/{warning_id}/acknowledge", responses=answers_with(WarningOut))
async def post_acknowledge(warning_id: RequestId, body: AcknowledgeIn, request: Request, app: AppDep,
                           engine: EngineDep, writer: WriterDep, runner: RunnerDep,
                           principal: CreditWriter) -> Response:
    """Acknowledge a warning with a note (recorded with the caller's identity); it stays open until
    its condition is gone."""
    on: date = given_or_today(body.on, "body.on", request)
    customer_id = body.customer_id or await _warning_customer(engine, runner, warning_id)
    acknowledged = await writer.run(app.acknowledge_warning, customer_id, warning_id, body.note,
                                    principal.identity, on)
    if acknowledged is None:
        raise not_found("warning", warning_id)
    return _json(acknowledged)


async def _warning_customer(engine: Engine, runner: ReviewRunner, warning_id: str) -> str:
    found = await owners(engine, runner, lambda conn: queries.warning_customer(conn, warning_id), "warnings")
    if not found:
        raise not_found("warning", warning_id)
    return found[0]
