"""REST reads of advance receipts (``ledger:read``): the prepayment requests and what became of
their money, and the unapplied cash aged by days since it was received."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.ledger.api.params import AsOf, KnownAt, as_utc
from services.ledger.api.reports import CurrencyFilter, invalid
from services.ledger.read.aging import AgingRequestError
from services.ledger.read.prepayments import (
    Prepayment,
    UnappliedBuckets,
    UnappliedRow,
    prepayment_list,
    unapplied_aging,
)
from shared.auth import LedgerReader
from shared.business_dates import today_utc
from shared.dependencies import EngineDep
from shared.money import to_text
from shared.values import AnswerAmount

router = APIRouter(tags=["advance receipts"])

Status = Literal["requested", "partially_received", "received", "applied", "cancelled"]
CustomerFilter = Annotated[str | None, Query(min_length=1, max_length=200)]


class PrepaymentOut(BaseModel):
    request_id: str
    customer_id: str
    currency: str
    order_id: str | None
    requested_date: date
    due_date: date
    requested: AnswerAmount
    received: AnswerAmount
    applied: AnswerAmount
    refunded: AnswerAmount
    held: AnswerAmount
    status: Status
    age_days: int
    days_past_due: int
    cancelled_date: date | None


class PrepaymentsOut(BaseModel):
    as_of: date
    known_at: datetime | None
    prepayments: list[PrepaymentOut]


def _shown(p: Prepayment) -> dict[str, Any]:
    money = {name: to_text(getattr(p, name), p.currency)
             for name in ("requested", "received", "applied", "refunded", "held")}
    return {"request_id": p.request_id, "customer_id": p.customer_id, "currency": p.currency,
            "order_id": p.order_id, "requested_date": p.requested_date, "due_date": p.due_date, **money,
            "status": p.status, "age_days": p.age_days, "days_past_due": p.days_past_due,
            "cancelled_date": p.cancelled_date}


@router.get("/prepayments", response_model=PrepaymentsOut)
async def get_prepayments(
    engine: EngineDep,
    _: LedgerReader,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    status: Annotated[Status | None, Query(description="only the requests in this status on as_of")] = None,
    older_than_days: Annotated[int | None, Query(
        ge=0, le=36_500, description="only requests made more than this many days before as_of")] = None,
    customer_id: CustomerFilter = None,
) -> PrepaymentsOut:
    """The prepayment requests made by ``as_of`` with what was received for them, applied to
    invoices, refunded and is still held, their status then and their age in days."""
    day = as_of or today_utc()
    known = as_utc(known_at)

    def read() -> list[Prepayment]:
        with engine.connect() as conn:
            return prepayment_list(conn, day, known_at=known, customer_id=customer_id,
                                   older_than_days=older_than_days, status=status)

    found = await asyncio.to_thread(read)
    return PrepaymentsOut(as_of=day, known_at=known,
                          prepayments=[PrepaymentOut(**_shown(p)) for p in found])


class UnappliedAgingOut(BaseModel):
    as_of: date
    known_at: datetime | None
    currency: str | None
    buckets: list[str]
    rows: list[dict[str, Any]]


def _row(row: UnappliedRow) -> dict[str, Any]:
    return {"customer_id": row.customer_id, "currency": row.currency,
            **{name: to_text(amount, row.currency) for name, amount in row.buckets.items()},
            "total": to_text(row.total, row.currency),
            "from_prepayments": to_text(row.from_prepayments, row.currency),
            "credits": row.credits, "oldest_received": row.oldest_received}


@router.get("/aging/unapplied", response_model=UnappliedAgingOut)
async def get_unapplied_aging(
    engine: EngineDep,
    _: LedgerReader,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    buckets: Annotated[str | None, Query(
        description="ascending day edges; 30,60,90,180 (the default) gives 0-30, 31-60, 61-90, 91-180, 180+"
    )] = None,
    currency: CurrencyFilter = None,
    customer_id: CustomerFilter = None,
) -> UnappliedAgingOut:
    """Unapplied cash per customer and currency on ``as_of``: each payment's or credit note's
    remainder in the bucket of the days since it was received (``as_of`` - its date), the
    buckets adding up to ``total``; ``from_prepayments`` is the part paid for prepayment
    requests."""
    day = as_of or today_utc()
    known = as_utc(known_at)
    try:
        edges = UnappliedBuckets.parse(buckets)
    except AgingRequestError as error:
        raise invalid(error) from None

    def read() -> list[UnappliedRow]:
        with engine.connect() as conn:
            return unapplied_aging(conn, day, edges, known_at=known, customer_id=customer_id,
                                   currency=currency)

    rows = await asyncio.to_thread(read)
    return UnappliedAgingOut(as_of=day, known_at=known, currency=currency, buckets=edges.names,
                             rows=[_row(row) for row in rows])
