"""A customer's balances and open items, and an invoice, as they stand or as of a business
date and/or as known at an instant."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.ledger.api.params import AsOf, KnownAt, as_utc
from services.ledger.read import queries
from services.ledger.read.disputed import shown_disputed
from shared.auth import LedgerReader
from shared.business_dates import today_utc
from shared.dates import BusinessDate
from shared.dependencies import EngineDep
from shared.money import to_text
from shared.problems import not_found
from shared.values import AnswerAmount

router = APIRouter()


class CurrencyBalance(BaseModel):
    currency: str
    open_amount: AnswerAmount
    overdue_amount: AnswerAmount
    disputed_amount: AnswerAmount
    unapplied_cash: AnswerAmount


class BalanceOut(BaseModel):
    customer_id: str
    as_of: date
    known_at: datetime | None = None
    balances: list[CurrencyBalance]


class InvoiceOut(BaseModel):
    invoice_id: str
    customer_id: str
    currency: str
    amount: AnswerAmount
    open_amount: AnswerAmount
    status: str
    issue_date: date
    due_date: date
    settled_date: date | None
    days_late: int | None
    days_to_settle: int | None
    disputed_amount: AnswerAmount
    written_off: AnswerAmount
    discount_taken: AnswerAmount
    reference: str | None
    attributes: dict[str, str]
    as_of: date | None = None
    known_at: datetime | None = None


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
    disputed = shown_disputed(row["disputed_raw"], row["open_amount"], row["status"])
    return InvoiceOut(
        invoice_id=row["invoice_id"], customer_id=row["customer_id"], currency=currency,
        amount=to_text(row["amount"], currency), open_amount=to_text(row["open_amount"], currency),
        status=row["status"], issue_date=row["issue_date"], due_date=row["due_date"],
        settled_date=settled,
        days_late=max(0, (settled - row["due_date"]).days) if settled else None,
        days_to_settle=(settled - row["issue_date"]).days if settled else None,
        disputed_amount=to_text(disputed, currency),
        written_off=to_text(row["written_off"], currency),
        discount_taken=to_text(row["discount_taken"], currency),
        reference=row["reference"], attributes=row["attributes"] or {},
        as_of=as_of, known_at=known,
    )


class OpenItemOut(BaseModel):
    invoice_id: str
    currency: str
    amount: AnswerAmount
    open_amount: AnswerAmount
    disputed_amount: AnswerAmount
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
