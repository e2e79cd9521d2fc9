"""A customer's balances and open items, and an invoice, as they stand or as of a business
date and/or as known at an instant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, TypeAdapter

from services.ledger.api.params import AsOf, KnownAt, as_utc
from services.ledger.read import queries
from services.ledger.read.disputed import shown_disputed
from shared.auth import BEARER_SECURITY, authorize
from shared.business_dates import today_utc
from shared.dates import BusinessDate
from shared.dependencies import ReadsDep
from shared.hot_reads import HotReads, ReadPlan
from shared.money import to_text
from shared.openapi import answers_with
from shared.problems import not_found
from shared.tokens import Principal, Scopes
from shared.values import AnswerAmount

router = APIRouter()

# These reads are the console's hot path; each costs little more than its query:
# - the scope is checked by ``authorize`` in a dependency of its own (still before the
#   parameters are read: the same 401/403 first), without ``HTTPBearer``'s sub-dependency;
#   the operation names the bearer scheme itself (``BEARER_SECURITY``);
# - the answer is rendered by orjson from plain values, in the models' field order and
#   formats (documented by the models, ``answers_with``), not validated again by FastAPI.


async def ledger_reader(request: Request) -> Principal:
    """The caller, if it holds ``ledger:read`` (else the 401/403 problem of ``LedgerReader``)."""
    return authorize(request, Scopes.LEDGER_READ)


Reader = Annotated[Principal, Depends(ledger_reader)]
_READ_OPENAPI: dict[str, Any] = {"security": BEARER_SECURITY}
_INSTANT = TypeAdapter(datetime)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _instant(value: datetime | None) -> str | None:
    """An instant as the models render it (pydantic's format: ``...Z`` for UTC)."""
    return None if value is None else _INSTANT.dump_python(value, mode="json")


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


async def _customer_rows(
    reads: HotReads, customer_id: str,
    plan_of: Callable[[str, date, datetime | None], ReadPlan[list[dict[str, Any]]]],
    as_of: date | None, known_at: datetime | None,
) -> tuple[date, datetime | None, list[dict[str, Any]]]:
    """The business date, the instant and a customer's rows read as of them (404 for no such customer)."""
    day = as_of or today_utc()
    known = as_utc(known_at)
    rows = await reads.run(queries.of_customer(customer_id, plan_of(customer_id, day, known)))
    if rows is None:
        raise not_found("customer", customer_id)
    return day, known, rows


@router.get("/customers/{customer_id}/balance", tags=["balances"], responses=answers_with(BalanceOut),
            openapi_extra=_READ_OPENAPI)
async def get_balance(
    customer_id: str, reads: ReadsDep, _: Reader, as_of: AsOf = None, known_at: KnownAt = None
) -> Response:
    day, known, rows = await _customer_rows(reads, customer_id, queries.balances_plan, as_of, known_at)
    return _json({
        "customer_id": customer_id, "as_of": day, "known_at": _instant(known),
        "balances": [
            {"currency": r["currency"], **{
                k: to_text(r[k], r["currency"])
                for k in ("open_amount", "overdue_amount", "disputed_amount", "unapplied_cash")
            }}
            for r in rows
        ],
    })


@router.get("/invoices/{invoice_id}", tags=["invoices"], responses=answers_with(InvoiceOut),
            openapi_extra=_READ_OPENAPI)
async def get_invoice(
    invoice_id: str, reads: ReadsDep, _: Reader, known_at: KnownAt = None,
    as_of: Annotated[BusinessDate | None,
                     Query(description="business date; default: everything booked")] = None,
) -> Response:
    """The invoice as it stands, or as of a business date and/or as known at an instant."""
    known = as_utc(known_at)
    row = await reads.run(queries.invoice_plan(invoice_id, as_of, known))
    if row is None:
        raise not_found("invoice", invoice_id)
    currency = row["currency"]
    settled = row["settled_date"]
    disputed = shown_disputed(row["disputed_raw"], row["open_amount"], row["status"])
    return _json({
        "invoice_id": row["invoice_id"], "customer_id": row["customer_id"], "currency": currency,
        "amount": to_text(row["amount"], currency), "open_amount": to_text(row["open_amount"], currency),
        "status": row["status"], "issue_date": row["issue_date"], "due_date": row["due_date"],
        "settled_date": settled,
        "days_late": max(0, (settled - row["due_date"]).days) if settled else None,
        "days_to_settle": (settled - row["issue_date"]).days if settled else None,
        "disputed_amount": to_text(disputed, currency),
        "written_off": to_text(row["written_off"], currency),
        "discount_taken": to_text(row["discount_taken"], currency),
        "reference": row["reference"], "attributes": row["attributes"] or {},
        "as_of": as_of, "known_at": _instant(known),
    })


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


@router.get("/customers/{customer_id}/open-items", tags=["balances"], responses=answers_with(OpenItemsOut),
            openapi_extra=_READ_OPENAPI)
async def get_open_items(
    customer_id: str, reads: ReadsDep, _: Reader, as_of: AsOf = None, known_at: KnownAt = None
) -> Response:
    """The customer's invoices open on ``as_of`` (as known at ``known_at``), oldest due first."""
    day, known, rows = await _customer_rows(reads, customer_id, queries.open_items_plan, as_of, known_at)
    return _json({
        "customer_id": customer_id, "as_of": day, "known_at": _instant(known),
        "open_items": [
            {
                "invoice_id": r["invoice_id"], "currency": r["currency"],
                "amount": to_text(r["amount"], r["currency"]),
                "open_amount": to_text(r["open_amount"], r["currency"]),
                "disputed_amount": to_text(r["disputed_amount"], r["currency"]),
                "status": r["status"], "issue_date": r["issue_date"], "due_date": r["due_date"],
                "days_past_due": r["days_past_due"], "reference": r["reference"],
                "attributes": r["attributes"] or {},
            }
            for r in rows
        ],
    })
