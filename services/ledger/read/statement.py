"""A customer's statement of account: per currency, the balance before the period, every
movement of it by effective date with its type and reference, the running balance, the
balance after it, and the unapplied cash in it.

The balance is what the customer owes net of what it paid ahead: the invoices' open amounts
less unapplied cash (``Σ open_delta - Σ unapplied_delta`` of the movements). A movement that
moves money without changing that (a payment applied to an invoice out of unapplied cash, an
application released, a dispute opened or closed) is no line. Every other movement is a line,
``debit`` when it raises the balance and ``credit`` when it lowers it, so opening + Σ debit -
Σ credit = closing. One query per customer, all currencies at once, over its indexed movements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from services.ledger.read.projections import movements
from shared.money import ZERO

# the movements' kinds as the statement names them
STATEMENT_TYPES = {
    "invoice_issued": "invoice",
    "adjusted": "adjustment",
    "cancelled": "cancellation",
    "written_off": "write_off",
    "discount": "discount",
    "discount_released": "discount",
    "payment_received": "payment",
    "credit_note_issued": "credit_note",
    "dispute_credited": "credit_note",
    "payment_reversed": "reversal",
    "refund": "refund",
}


@dataclass
class CurrencyStatement:
    currency: str
    opening_balance: Decimal = ZERO
    lines: list[dict[str, Any]] = field(default_factory=list)
    closing_balance: Decimal = ZERO
    unapplied_cash: Decimal = ZERO


def statement(conn: Connection, customer_id: str, first: date, last: date, *,
              currency: str | None = None, known_at: datetime | None = None) -> list[CurrencyStatement]:
    """The statement of ``first`` to ``last`` (inclusive), per currency, as known at ``known_at``."""
    m = movements.c
    query = (select(m.currency, m.kind, m.effective_date, m.invoice_id, m.credit, m.open_delta,
                    m.unapplied_delta)
             .where(m.customer_id == customer_id, m.effective_date <= last)
             .order_by(m.currency, m.effective_date, m.position, m.id))
    if currency is not None:
        query = query.where(m.currency == currency)
    if known_at is not None:
        query = query.where(m.recorded_at <= known_at)
    found: dict[str, CurrencyStatement] = {}
    for row in conn.execute(query):
        current = found.get(row.currency)
        if current is None:
            current = found[row.currency] = CurrencyStatement(row.currency)
        change = row.open_delta - row.unapplied_delta
        current.unapplied_cash += row.unapplied_delta
        current.closing_balance += change
        if row.effective_date < first:
            current.opening_balance += change
        elif change:
            current.lines.append({
                "date": row.effective_date, "type": STATEMENT_TYPES.get(row.kind, row.kind),
                "reference": _reference(row.kind, row.invoice_id, row.credit),
                "debit": change if change > 0 else ZERO, "credit": -change if change < 0 else ZERO,
                "balance": current.closing_balance,
            })
    return [found[code] for code in sorted(found)]


def _reference(kind: str, invoice_id: str | None, credit: str | None) -> str | None:
    """The document a line is about: the invoice of an invoice's own movement (a discount too),
    else the payment or credit note (``payment:P1`` -> ``P1``)."""
    if kind in _OF_INVOICE or not credit:
        return invoice_id
    return credit.partition(":")[2] or credit


_OF_INVOICE = frozenset({"invoice_issued", "adjusted", "cancelled", "written_off", "discount",
                         "discount_released"})
