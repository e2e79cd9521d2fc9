"""REST reports of the ledger: aging, receivables metrics and statements of account (``ledger:read``)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.ledger.api.params import AsOf, KnownAt, as_utc
from services.ledger.read import queries
from services.ledger.read.aging import AgingRequestError, Buckets, GroupBy, aging
from services.ledger.read.receivables_metrics import ReceivablesMetrics, receivables_metrics
from services.ledger.read.statement import CurrencyStatement, statement
from shared.auth import LedgerReader
from shared.business_dates import today_utc
from shared.dates import BusinessDate
from shared.dependencies import EngineDep
from shared.money import to_text
from shared.openapi import answers_with
from shared.problems import REQUEST_INVALID, Problem, field_problem, not_found
from shared.values import CURRENCY_PATTERN, AnswerAmount

router = APIRouter(tags=["reports"])

CurrencyFilter = Annotated[str | None, Query(pattern=CURRENCY_PATTERN, description="ISO 4217 code")]


def invalid(error: AgingRequestError) -> Problem:
    return field_problem(f"query.{error.field}", error.message, title=REQUEST_INVALID)


class AgingOut(BaseModel):
    as_of: date
    known_at: datetime | None
    group_by: str
    currency: str | None
    buckets: list[str]
    rows: list[dict[str, Any]]
    next_cursor: str | None


@router.get("/aging", response_model=AgingOut)
async def get_aging(
    engine: EngineDep,
    _: LedgerReader,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    buckets: Annotated[str | None, Query(
        description="ascending day edges; 30,60,90,120 gives current, 1-30, 31-60, 61-90, 91-120, 120+"
    )] = None,
    group_by: Annotated[str | None, Query(
        description="customer, currency (default) or an invoice attribute (region or attributes.region)"
    )] = None,
    currency: CurrencyFilter = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> AgingOut:
    """Open amounts by days past due (as_of - due_date), per group and currency.

    Every row is one group in one currency: its buckets add up to ``total`` (the open amount);
    ``disputed`` is the part of it under dispute, shown apart; ``unapplied_cash`` is the
    customers' money not yet matched to an invoice (not by attribute: it has none).
    """
    day = as_of or today_utc()
    known = as_utc(known_at)
    try:
        edges, grouping = Buckets.parse(buckets), GroupBy.parse(group_by)
    except AgingRequestError as error:
        raise invalid(error) from None

    def read() -> Any:
        with engine.connect() as conn:
            return aging(conn, day, known_at=known, buckets=edges, group_by=grouping, currency=currency,
                         limit=limit, cursor=cursor)

    try:
        page = await asyncio.to_thread(read)
    except AgingRequestError as error:
        raise invalid(error) from None
    rows = []
    for row in page.rows:
        shown: dict[str, Any] = {"group": row.group, "currency": row.currency}
        if grouping.kind == "customer":
            shown["customer_id"] = row.group
        shown.update({name: to_text(amount, row.currency) for name, amount in row.buckets.items()})
        shown["disputed"] = to_text(row.disputed, row.currency)
        shown["total"] = to_text(row.total, row.currency)
        if row.unapplied_cash is not None:
            shown["unapplied_cash"] = to_text(row.unapplied_cash, row.currency)
        rows.append(shown)
    return AgingOut(as_of=day, known_at=known, group_by=grouping.label, currency=currency,
                    buckets=edges.names, rows=rows, next_cursor=page.next_cursor)


class CurrencyMetricsOut(BaseModel):
    currency: str
    dso: str | None
    best_possible_dso: str | None
    average_days_delinquent: str | None
    cei: str | None
    ar_balance: AnswerAmount
    credit_sales: AnswerAmount
    current_ar: AnswerAmount
    ar_at_start: AnswerAmount
    unapplied_cash: AnswerAmount


class MetricsOut(BaseModel):
    as_of: date
    days: int
    period_start: date
    known_at: datetime | None
    currency: str | None
    # the contract's figures, when the answer covers one currency (the filter or a one-currency book)
    dso: str | None = None
    best_possible_dso: str | None = None
    average_days_delinquent: str | None = None
    cei: str | None = None
    ar_balance: AnswerAmount | None = None
    credit_sales: AnswerAmount | None = None
    currencies: list[CurrencyMetricsOut]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@router.get("/metrics/receivables", response_model=MetricsOut)
async def get_receivables_metrics(
    engine: EngineDep,
    _: LedgerReader,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    days: Annotated[int, Query(ge=1, le=3660, description="length of the period ending on as_of")] = 90,
    currency: CurrencyFilter = None,
) -> MetricsOut:
    """DSO, best possible DSO, average days delinquent and CEI, per currency."""
    day = as_of or today_utc()
    known = as_utc(known_at)

    def read() -> list[ReceivablesMetrics]:
        with engine.connect() as conn:
            return receivables_metrics(conn, day, days, currency=currency, known_at=known)

    figures = [
        CurrencyMetricsOut(
            currency=m.currency, dso=_text(m.dso), best_possible_dso=_text(m.best_possible_dso),
            average_days_delinquent=_text(m.average_days_delinquent), cei=_text(m.cei),
            ar_balance=to_text(m.ar_balance, m.currency), credit_sales=to_text(m.credit_sales, m.currency),
            current_ar=to_text(m.current_ar, m.currency), ar_at_start=to_text(m.ar_at_start, m.currency),
            unapplied_cash=to_text(m.unapplied_cash, m.currency),
        )
        for m in await asyncio.to_thread(read)
    ]
    only = figures[0].model_dump(include={
        "dso", "best_possible_dso", "average_days_delinquent", "cei", "ar_balance", "credit_sales",
    }) if len(figures) == 1 else {}
    return MetricsOut(as_of=day, days=days, period_start=day - timedelta(days=days),
                      known_at=known, currency=currency, currencies=figures, **only)


class StatementLineOut(BaseModel):
    date: date
    type: str
    reference: str | None
    debit: AnswerAmount
    credit: AnswerAmount
    balance: AnswerAmount


class CurrencyStatementOut(BaseModel):
    currency: str
    opening_balance: AnswerAmount
    lines: list[StatementLineOut]
    closing_balance: AnswerAmount
    unapplied_cash: AnswerAmount


class StatementOut(BaseModel):
    customer_id: str
    from_: date = Field(alias="from")
    to: date
    known_at: datetime | None
    currencies: list[CurrencyStatementOut]


@router.get("/customers/{customer_id}/statement", response_model=None, responses=answers_with(StatementOut))
async def get_statement(
    customer_id: str, engine: EngineDep, _: LedgerReader,
    first: Annotated[BusinessDate | None,
                     Query(alias="from", description="default: the first day of to's month")] = None,
    last: Annotated[BusinessDate | None, Query(alias="to", description="default: today (UTC)")] = None,
    currency: CurrencyFilter = None,
    known_at: KnownAt = None,
) -> dict[str, Any]:
    """The statement of account of a period: per currency, the opening balance, every movement
    by effective date with its type, reference, debit or credit and the running balance, the
    closing balance and the unapplied cash (the balance is net of it)."""
    to = last or today_utc()
    start = first or to.replace(day=1)
    if start > to:
        raise field_problem("query.to", f"must not be before from ({start})", title=REQUEST_INVALID)
    known = as_utc(known_at)

    def read() -> tuple[bool, list[CurrencyStatement]]:
        with engine.connect() as conn:
            return (queries.customer_exists(conn, customer_id),
                    statement(conn, customer_id, start, to, currency=currency, known_at=known))

    exists, found = await asyncio.to_thread(read)
    if not exists:
        raise not_found("customer", customer_id)
    return {"customer_id": customer_id, "from": start, "to": to, "known_at": known, "currencies": [
        {"currency": c.currency, "opening_balance": to_text(c.opening_balance, c.currency),
         "lines": [{**line, **{k: to_text(line[k], c.currency) for k in ("debit", "credit", "balance")}}
                   for line in c.lines],
         "closing_balance": to_text(c.closing_balance, c.currency),
         "unapplied_cash": to_text(c.unapplied_cash, c.currency)}
        for c in found
    ]}
