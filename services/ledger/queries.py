"""Read-side queries over the ledger's read models (as of a business date, as known at an instant)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.engine import Connection

from services.ledger.projections import customers, invoices, movements
from shared.db import money_sum
from shared.money import ZERO


def customer_exists(conn: Connection, customer_id: str) -> bool:
    return conn.execute(
        select(customers.c.customer_id).where(customers.c.customer_id == customer_id)
    ).first() is not None


def balances(
    conn: Connection, customer_id: str, as_of: date, known_at: datetime | None = None
) -> list[dict[str, Any]]:
    """Per currency: open, overdue (due before as_of), disputed and unapplied, from movements."""
    conditions = [movements.c.customer_id == customer_id, movements.c.effective_date <= as_of]
    if known_at is not None:
        conditions.append(movements.c.recorded_at <= known_at)
    overdue = case((movements.c.due_date < as_of, movements.c.open_delta), else_=0)
    rows = conn.execute(
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
        total["disputed_amount"] += max(ZERO, min(row.disputed, row.open))
    return [{"currency": currency, **values} for currency, values in sorted(totals.items())]


def invoice(conn: Connection, invoice_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(invoices).where(invoices.c.invoice_id == invoice_id)).mappings().first()
    return dict(row) if row else None
