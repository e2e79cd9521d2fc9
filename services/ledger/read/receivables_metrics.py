"""Receivables metrics per currency: DSO, best possible DSO, average days delinquent, CEI.

For a period of ``days`` days ending on ``as_of`` (from ``as_of - days``, exclusive, to
``as_of``, inclusive), with every figure as of its date and as known at ``known_at``:

- AR balance: the open amount of the invoices (unapplied cash is reported apart, not netted);
- current AR: the part of it not yet due (due date on or after ``as_of``, the aging's
  ``current`` bucket);
- credit sales: what was invoiced in the period, net of the adjustments and cancellations
  effective in it;
- DSO, best possible DSO, ADD and CEI as ``shared.collection_figures`` defines them (rounded
  half-up to two decimals; a ratio whose divisor is zero is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, select
from sqlalchemy.engine import Connection

from services.ledger.read.projections import movements
from services.ledger.read.queries import visible
from shared.collection_figures import collection_figures
from shared.db import execute_sums, money_sum

SALES_KINDS = ("invoice_issued", "adjusted", "cancelled")


@dataclass(frozen=True)
class ReceivablesMetrics:
    currency: str
    period_start: date  # AR at start is the balance at the end of this day
    ar_balance: Decimal
    current_ar: Decimal
    ar_at_start: Decimal
    credit_sales: Decimal
    unapplied_cash: Decimal
    dso: Decimal | None
    best_possible_dso: Decimal | None
    average_days_delinquent: Decimal | None
    cei: Decimal | None


def receivables_metrics(
    conn: Connection, as_of: date, days: int, *, currency: str | None = None,
    known_at: datetime | None = None,
) -> list[ReceivablesMetrics]:
    """The metrics of every currency in the book (or of one), in one pass over the movements."""
    start = as_of - timedelta(days=days)
    open_delta = movements.c.open_delta
    query = (
        select(
            movements.c.currency,
            money_sum(open_delta).label("ar_end"),
            money_sum(case((movements.c.due_date >= as_of, open_delta), else_=0)).label("current_end"),
            money_sum(case((movements.c.effective_date <= start, open_delta), else_=0)).label("ar_start"),
            money_sum(case(
                (and_(movements.c.effective_date > start, movements.c.kind.in_(SALES_KINDS)), open_delta),
                else_=0,
            )).label("sales"),
            money_sum(movements.c.unapplied_delta).label("unapplied"),
        )
        .where(*visible(as_of, known_at))
        .group_by(movements.c.currency)
        .order_by(movements.c.currency)
    )
    if currency is not None:
        query = query.where(movements.c.currency == currency)
    found = {row.currency: row for row in execute_sums(conn, query)}
    if currency is not None and currency not in found:
        return [_metrics(currency, start, days, *(Decimal(0),) * 5)]
    return [
        _metrics(code, start, days, row.ar_end, row.current_end, row.ar_start, row.sales, row.unapplied)
        for code, row in found.items()
    ]


def _metrics(
    currency: str, start: date, days: int, ar_end: Decimal, current_end: Decimal, ar_start: Decimal,
    sales: Decimal, unapplied: Decimal,
) -> ReceivablesMetrics:
    figures = collection_figures(ar_start=ar_start, sales=sales, ar_end=ar_end, current_end=current_end,
                                 days=days)
    return ReceivablesMetrics(
        currency=currency, period_start=start, ar_balance=ar_end, current_ar=current_end,
        ar_at_start=ar_start, credit_sales=sales, unapplied_cash=unapplied, dso=figures.dso,
        best_possible_dso=figures.best_possible_dso,
        average_days_delinquent=figures.average_days_delinquent, cei=figures.cei,
    )
