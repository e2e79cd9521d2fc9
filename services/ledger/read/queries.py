"""Read-side queries over the ledger's read models (as of a business date, as known at an instant)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.engine import Connection

from services.ledger.domain.book import invoice_status
from services.ledger.read.disputed import shown_disputed
from services.ledger.read.projections import customers, invoices, movements
from shared.db import execute_sums, money_sum
from shared.money import ZERO

# movements that change what was invoiced (the rest move money against it)
INVOICED_KINDS = ("invoice_issued", "adjusted")


def visible(as_of: date | None, known_at: datetime | None) -> list[Any]:
    """The movements in effect on ``as_of`` as recorded by ``known_at`` (None: no limit)."""
    conditions = []
    if as_of is not None:
        conditions.append(movements.c.effective_date <= as_of)
    if known_at is not None:
        conditions.append(movements.c.recorded_at <= known_at)
    return conditions


def customer_exists(conn: Connection, customer_id: str) -> bool:
    return conn.execute(
        select(customers.c.customer_id).where(customers.c.customer_id == customer_id)
    ).first() is not None


def balances(
    conn: Connection, customer_id: str, as_of: date, known_at: datetime | None = None
) -> list[dict[str, Any]]:
    """Per currency: open, overdue (due before as_of), disputed and unapplied, from movements."""
    conditions = [movements.c.customer_id == customer_id, *visible(as_of, known_at)]
    overdue = case((movements.c.due_date < as_of, movements.c.open_delta), else_=0)
    rows = execute_sums(conn,
        select(
            movements.c.currency,
            movements.c.invoice_id,
            money_sum(movements.c.open_delta).label("open"),
            money_sum(overdue).label("overdue"),
            money_sum(movements.c.disputed_delta).label("disputed"),
            money_sum(movements.c.unapplied_delta).label("unapplied"),
        )
        .where(*conditions)
        .group_by(movements.c.currency, movements.c.invoice_id)
    ).all()
    totals: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: {"open_amount": ZERO, "overdue_amount": ZERO, "disputed_amount": ZERO,
                 "unapplied_cash": ZERO}
    )
    for row in rows:
        total = totals[row.currency]
        total["open_amount"] += row.open
        total["overdue_amount"] += row.overdue
        total["unapplied_cash"] += row.unapplied
        total["disputed_amount"] += shown_disputed(row.disputed, row.open)
    return [{"currency": currency, **values} for currency, values in sorted(totals.items())]


def open_items(
    conn: Connection, customer_id: str, as_of: date, known_at: datetime | None = None
) -> list[dict[str, Any]]:
    """The customer's invoices open on ``as_of`` (as known at ``known_at``), oldest due first."""
    per_invoice = (
        select(
            movements.c.invoice_id,
            money_sum(movements.c.open_delta).label("open_amount"),
            money_sum(movements.c.disputed_delta).label("disputed"),
            money_sum(case((movements.c.kind.in_(INVOICED_KINDS), movements.c.open_delta), else_=0))
            .label("amount"),
        )
        .where(movements.c.customer_id == customer_id, movements.c.invoice_id.is_not(None),
               *visible(as_of, known_at))
        .group_by(movements.c.invoice_id)
        .having(money_sum(movements.c.open_delta) != 0)
        .subquery()
    )
    rows = execute_sums(conn,
        select(per_invoice, invoices.c.currency, invoices.c.issue_date, invoices.c.due_date,
               invoices.c.reference, invoices.c.attributes)
        .join(invoices, invoices.c.invoice_id == per_invoice.c.invoice_id)
        .order_by(invoices.c.due_date, invoices.c.issue_date, invoices.c.invoice_id)
    ).mappings()
    return [
        {
            **row,
            "disputed_amount": shown_disputed(row["disputed"], row["open_amount"]),
            "days_past_due": (as_of - row["due_date"]).days,
            "status": "partially_paid" if row["open_amount"] < row["amount"] else "open",
        }
        for row in rows
    ]


def invoice(
    conn: Connection, invoice_id: str, as_of: date | None = None, known_at: datetime | None = None
) -> dict[str, Any] | None:
    """The invoice now, or as of a date / as known at an instant (None if not issued by then).

    The dated answer is summed from the invoice's movements, by the domain's rules: the
    settled date is the last effective date on which the open amount changed.
    """
    row = conn.execute(select(invoices).where(invoices.c.invoice_id == invoice_id)).mappings().first()
    if row is None:
        return None
    current = dict(row)
    if as_of is None and known_at is None:
        return current
    by_kind_and_date = execute_sums(conn,
        select(movements.c.kind, movements.c.effective_date,
               money_sum(movements.c.open_delta).label("open"),
               money_sum(movements.c.disputed_delta).label("disputed"))
        .where(movements.c.invoice_id == invoice_id, *visible(as_of, known_at))
        .group_by(movements.c.kind, movements.c.effective_date)
    ).all()
    if not any(m.kind == "invoice_issued" for m in by_kind_and_date):
        return None
    kinds: dict[str, Decimal] = defaultdict(lambda: ZERO)
    net_by_date: dict[date, Decimal] = defaultdict(lambda: ZERO)
    disputed = ZERO
    for m in by_kind_and_date:
        kinds[m.kind] += m.open
        disputed += m.disputed
        if m.kind != "cancelled":
            net_by_date[m.effective_date] += m.open
    cancelled = "cancelled" in kinds
    amount = sum((kinds[k] for k in INVOICED_KINDS), ZERO)
    open_amount = sum(kinds.values(), ZERO)
    written_off = -kinds["written_off"]
    settled = None
    if open_amount == ZERO and not cancelled:
        settled = max((day for day, delta in net_by_date.items() if delta), default=current["issue_date"])
    return {
        **current,
        "amount": amount, "open_amount": open_amount, "disputed_raw": disputed,
        "written_off": written_off,
        "discount_taken": -(kinds["discount"] + kinds["discount_released"]),
        "status": invoice_status(cancelled, open_amount, amount, written_off),
        "settled_date": settled,
    }
