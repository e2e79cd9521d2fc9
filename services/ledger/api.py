"""The ledger's REST surface: invoices, balances, open items, event intake, health and metrics.

Reports (aging, receivables metrics) are in ``api_reports``, the audit trail in ``api_audit``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Engine

from services.ledger import queries
from services.ledger.application import LedgerApplication
from shared.auth import LedgerReader, LedgerWriter
from shared.business_dates import today_utc
from shared.dates import BusinessDate, BusinessInstant
from shared.erp_events import InboundMessage, InvalidMessage, parse_envelope, validate_event
from shared.money import ZERO, MoneyText, to_text
from shared.problems import not_found
from shared.runtime import ServiceRuntime


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


EngineDep = Annotated[Engine, Depends(get_engine)]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
AsOf = Annotated[BusinessDate | None, Query(description="business date; default today (UTC)")]
KnownAt = Annotated[BusinessInstant | None, Query(
    description="answer as recorded up to this instant (ISO 8601; without an offset, UTC)"
)]

router = APIRouter()


class CurrencyBalance(BaseModel):
    currency: str
    open_amount: MoneyText
    overdue_amount: MoneyText
    disputed_amount: MoneyText
    unapplied_cash: MoneyText


class BalanceOut(BaseModel):
    customer_id: str
    as_of: date
    known_at: datetime | None = None
    balances: list[CurrencyBalance]


class InvoiceOut(BaseModel):
    invoice_id: str
    customer_id: str
    currency: str
    amount: MoneyText
    open_amount: MoneyText
    status: str
    issue_date: date
    due_date: date
    settled_date: date | None
    days_late: int | None
    days_to_settle: int | None
    disputed_amount: MoneyText
    written_off: MoneyText
    discount_taken: MoneyText
    reference: str | None
    attributes: dict[str, str]
    as_of: date | None = None
    known_at: datetime | None = None


class EventOutcome(BaseModel):
    index: int
    id: str | None
    source: str | None
    status: str  # applied | duplicate | rejected
    reason: str | None = None


class IntakeOut(BaseModel):
    accepted: int
    rejected: int
    outcomes: list[EventOutcome]


def as_utc(instant: datetime | None) -> datetime | None:
    """A ``known_at`` in UTC, as instants are recorded (naive means UTC).

    SQLite keeps timestamps as UTC text without an offset, so an instant given with another
    offset must be converted before it is compared.
    """
    if instant is None:
        return None
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


@router.get("/customers/{customer_id}/balance", response_model=BalanceOut, tags=["balances"])
async def get_balance(
    customer_id: str, engine: EngineDep, _: LedgerReader, as_of: AsOf = None, known_at: KnownAt = None
) -> BalanceOut:
    day = as_of or today_utc()
    known = as_utc(known_at)

    def read() -> tuple[bool, list[dict[str, Any]]]:
        with engine.connect() as conn:
            return queries.customer_exists(conn, customer_id), queries.balances(conn, customer_id, day, known)

    exists, rows = await asyncio.to_thread(read)
    if not exists:
        raise not_found("customer", customer_id)
    return BalanceOut(
        customer_id=customer_id, as_of=day, known_at=known,
        balances=[
            CurrencyBalance(currency=r["currency"], **{
                k: to_text(r[k], r["currency"])
                for k in ("open_amount", "overdue_amount", "disputed_amount", "unapplied_cash")
            })
            for r in rows
        ],
    )


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut, tags=["invoices"])
async def get_invoice(
    invoice_id: str, engine: EngineDep, _: LedgerReader, known_at: KnownAt = None,
    as_of: Annotated[BusinessDate | None,
                     Query(description="business date; default: everything booked")] = None,
) -> InvoiceOut:
    """The invoice as it stands, or as of a business date and/or as known at an instant."""
    known = as_utc(known_at)

    def read() -> dict[str, Any] | None:
        with engine.connect() as conn:
            return queries.invoice(conn, invoice_id, as_of, known)

    row = await asyncio.to_thread(read)
    if row is None:
        raise not_found("invoice", invoice_id)
    currency = row["currency"]
    settled = row["settled_date"]
    shown_disputed = (
        queries.shown_disputed(row["disputed_raw"], row["open_amount"]) if row["status"] != "cancelled"
        else ZERO
    )
    return InvoiceOut(
        invoice_id=row["invoice_id"], customer_id=row["customer_id"], currency=currency,
        amount=to_text(row["amount"], currency), open_amount=to_text(row["open_amount"], currency),
        status=row["status"], issue_date=row["issue_date"], due_date=row["due_date"],
        settled_date=settled,
        days_late=max(0, (settled - row["due_date"]).days) if settled else None,
        days_to_settle=(settled - row["issue_date"]).days if settled else None,
        disputed_amount=to_text(shown_disputed, currency),
        written_off=to_text(row["written_off"], currency),
        discount_taken=to_text(row["discount_taken"], currency),
        reference=row["reference"], attributes=row["attributes"] or {},
        as_of=as_of, known_at=known,
    )


class OpenItemOut(BaseModel):
    invoice_id: str
    currency: str
    amount: MoneyText
    open_amount: MoneyText
    disputed_amount: MoneyText
    status: str
    issue_date: date
    due_date: date
    days_past_due: int  # as_of - due_date: zero or less while not yet due
    reference: str | None
    attributes: dict[str, str]


class OpenItemsOut(BaseModel):
    customer_id: str
    as_of: date
    known_at: datetime | None = None
    open_items: list[OpenItemOut]


@router.get("/customers/{customer_id}/open-items", response_model=OpenItemsOut, tags=["balances"])
async def get_open_items(
    customer_id: str, engine: EngineDep, _: LedgerReader, as_of: AsOf = None, known_at: KnownAt = None
) -> OpenItemsOut:
    """The customer's invoices open on ``as_of`` (as known at ``known_at``), oldest due first."""
    day = as_of or today_utc()
    known = as_utc(known_at)

    def read() -> tuple[bool, list[dict[str, Any]]]:
        with engine.connect() as conn:
            return (queries.customer_exists(conn, customer_id),
                    queries.open_items(conn, customer_id, day, known))

    exists, rows = await asyncio.to_thread(read)
    if not exists:
        raise not_found("customer", customer_id)
    return OpenItemsOut(
        customer_id=customer_id, as_of=day, known_at=known,
        open_items=[
            OpenItemOut(
                invoice_id=r["invoice_id"], currency=r["currency"],
                amount=to_text(r["amount"], r["currency"]),
                open_amount=to_text(r["open_amount"], r["currency"]),
                disputed_amount=to_text(r["disputed_amount"], r["currency"]),
                status=r["status"], issue_date=r["issue_date"], due_date=r["due_date"],
                days_past_due=r["days_past_due"], reference=r["reference"],
                attributes=r["attributes"] or {},
            )
            for r in rows
        ],
    )


@router.post("/events", status_code=202, response_model=IntakeOut, tags=["events"])
async def post_events(
    request: Request,
    runtime: RuntimeDep,
    _: LedgerWriter,
    body: Annotated[Any, Body(description="one CloudEvent or a JSON array of them")],
) -> IntakeOut:
    """Take ERP events over HTTP with the same validation and idempotency as the topics."""
    items = body if isinstance(body, list) else [body]
    outcomes: list[EventOutcome | None] = [None] * len(items)
    valid: list[tuple[int, InboundMessage]] = []
    for index, item in enumerate(items):
        ident = (item.get("id"), item.get("source")) if isinstance(item, dict) else (None, None)
        try:
            valid.append((index, validate_event(parse_envelope(item), limits=request.app.state.limits)))
        except InvalidMessage as error:
            outcomes[index] = EventOutcome(
                index=index, id=ident[0], source=ident[1], status="rejected", reason=error.reason
            )
    ledger: LedgerApplication = request.app.state.ledger
    async with runtime.write_lock:
        batch = await asyncio.to_thread(ledger.prepare, [m for _, m in valid])
        try:
            await asyncio.to_thread(ledger.commit, batch)
        except Exception:
            await asyncio.to_thread(ledger.discard, batch)
            raise
    reasons = {id(r.message): r.reason for r in batch.refusals}
    for (index, message), outcome in zip(valid, batch.outcomes, strict=True):
        outcomes[index] = EventOutcome(
            index=index, id=message.origin.id, source=message.origin.source,
            status="rejected" if outcome == "refused" else outcome,
            reason=reasons.get(id(message)),
        )
    runtime.notify_followers()
    final = [o for o in outcomes if o is not None]
    rejected = sum(1 for o in final if o.status == "rejected")
    return IntakeOut(accepted=len(final) - rejected, rejected=rejected, outcomes=final)
