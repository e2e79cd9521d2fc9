"""REST audit trail of the ledger (``ledger:read``): every event behind a customer or an invoice."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.ledger.application import LedgerApplication
from services.ledger.read import audit
from shared.auth import LedgerReader
from shared.db import BIGINT_MAX
from shared.dependencies import EngineDep
from shared.problems import not_found

router = APIRouter(prefix="/audit", tags=["audit"])


class InboundMessageOut(BaseModel):
    source: str | None
    id: str | None
    type: str | None
    topic: str | None
    partition: int | None
    offset: int | None


class AuditEntryOut(BaseModel):
    version: int
    recorded_at: datetime
    effective_date: date | None
    type: str
    data: dict[str, Any]
    message: InboundMessageOut | None  # None for the account's own bookkeeping (Opened)


class AuditOut(BaseModel):
    customer_id: str
    invoice_id: str | None = None
    events: list[AuditEntryOut]
    next_cursor: str | None = None


def _out(entries: list[audit.AuditEntry]) -> list[AuditEntryOut]:
    return [
        AuditEntryOut(
            version=e.version, recorded_at=e.recorded_at, effective_date=e.effective_date, type=e.type,
            data=e.data, message=InboundMessageOut(**e.message) if e.message else None,
        )
        for e in entries
    ]


@router.get("/customers/{customer_id}", response_model=AuditOut)
async def get_customer_audit(
    customer_id: str,
    request: Request,
    _: LedgerReader,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[int | None, Query(ge=1, le=BIGINT_MAX,
                                        description="next_cursor of the previous page")] = None,
) -> AuditOut:
    """The customer's account history in recorded order, a page at a time."""
    ledger: LedgerApplication = request.app.state.ledger
    entries = await asyncio.to_thread(
        audit.customer_history, ledger, customer_id, after=cursor or 0, limit=limit
    )
    if not entries and cursor is None:
        raise not_found("customer", customer_id)
    return AuditOut(
        customer_id=customer_id, events=_out(entries),
        next_cursor=str(entries[-1].version) if len(entries) == limit else None,
    )


@router.get("/invoices/{invoice_id}", response_model=AuditOut)
async def get_invoice_audit(
    invoice_id: str, request: Request, engine: EngineDep, _: LedgerReader
) -> AuditOut:
    """The events of the invoice's customer account that concern the invoice, in recorded order."""
    ledger: LedgerApplication = request.app.state.ledger

    def read() -> tuple[str | None, list[audit.AuditEntry]]:
        with engine.connect() as conn:
            customer_id = audit.invoice_customer(conn, invoice_id)
        if customer_id is None:
            return None, []
        return customer_id, audit.invoice_history(ledger, customer_id, invoice_id)

    customer_id, entries = await asyncio.to_thread(read)
    if customer_id is None or not entries:
        raise not_found("invoice", invoice_id)
    return AuditOut(customer_id=customer_id, invoice_id=invoice_id, events=_out(entries))
