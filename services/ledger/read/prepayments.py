"""Advance receipts as of a date, as known at an instant: the prepayment requests with what
came in for them and what became of it, and the unapplied cash by how long it has waited.

What became of a request's money is read off the movements of the payments held for it
(``ledger_prepayment_credits``), the same rows every balance sums:

- ``received``: their receipts, less what a reversal took back;
- ``applied``: what of them invoices took (the order's invoice first; what was left once the
  order was paid, or the request withdrawn, is ordinary cash, and what invoices take of it
  later counts here too), less what was released again;
- ``refunded``: what was paid back out of them;
- ``held``: the rest, unapplied (``received - applied - refunded``).

A request's status as of the date: ``cancelled`` once withdrawn; ``applied`` once an invoice
took some of its money (its order was invoiced; what is left shows as ``held``); ``received``
when what came covers the request; ``partially_received`` when something came; else
``requested``. A request is no receivable:
no balance, aging or DSO sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from services.ledger.read.aging import Buckets
from services.ledger.read.projections import movements, prepayment_credits, prepayments
from shared.db import execute_sums, money_sum
from shared.money import ZERO

STATUSES = ("requested", "partially_received", "received", "applied", "cancelled")
# the movements that bring a credit in, and how long it has been there is counted from
RECEIPTS = ("payment_received", "credit_note_issued", "dispute_credited")
DEFAULT_UNAPPLIED_EDGES = (30, 60, 90, 180)


@dataclass(frozen=True)
class Prepayment:
    request_id: str
    customer_id: str
    currency: str
    requested: Decimal
    requested_date: date
    due_date: date
    order_id: str | None
    received: Decimal
    applied: Decimal
    refunded: Decimal
    cancelled_date: date | None
    as_of: date

    @property
    def held(self) -> Decimal:
        return self.received - self.applied - self.refunded

    @property
    def status(self) -> str:
        if self.cancelled_date is not None:
            return "cancelled"
        if self.applied > ZERO:
            return "applied"
        if self.received >= self.requested:
            return "received"
        return "partially_received" if self.received > ZERO else "requested"

    @property
    def age_days(self) -> int:
        return (self.as_of - self.requested_date).days

    @property
    def days_past_due(self) -> int:
        """How long a request still waiting for its money is past its due date (else 0)."""
        waiting = self.status in ("requested", "partially_received")
        return max(0, (self.as_of - self.due_date).days) if waiting else 0


def prepayment_list(conn: Connection, as_of: date, *, known_at: datetime | None = None,
                    customer_id: str | None = None, older_than_days: int | None = None,
                    status: str | None = None) -> list[Prepayment]:
    """The requests made by ``as_of`` (recorded by ``known_at``), by request id."""
    p, t, m = prepayments.c, prepayment_credits.c, movements.c
    held_for = [t.request_id == p.request_id, t.customer_id == p.customer_id]
    moved = [m.customer_id == t.customer_id, m.credit == t.credit, m.currency == p.currency,
             m.effective_date <= as_of]
    visible = [p.requested_date <= as_of]
    cancelled = and_(p.cancelled_date <= as_of)
    if known_at is not None:
        held_for.append(t.recorded_at <= known_at)
        moved.append(m.recorded_at <= known_at)
        visible.append(p.recorded_at <= known_at)
        cancelled = and_(cancelled, p.cancelled_at <= known_at)
    if customer_id is not None:
        visible.append(p.customer_id == customer_id)
    if older_than_days is not None:
        visible.append(p.requested_date < as_of - timedelta(days=older_than_days))

    def of(*kinds: str) -> Any:
        return money_sum(case((m.kind.in_(kinds), m.unapplied_delta), else_=0))

    query = (
        select(p.request_id, p.customer_id, p.currency, p.amount, p.requested_date, p.due_date, p.order_id,
               func.max(case((cancelled, p.cancelled_date))).label("cancelled_date"),
               of("payment_received", "payment_reversed").label("received"),
               of("applied", "released").label("applied"), of("refund").label("refunded"))
        .select_from(prepayments.outerjoin(prepayment_credits, and_(*held_for))
                     .outerjoin(movements, and_(*moved)))
        .where(*visible)
        .group_by(p.request_id, p.customer_id, p.currency, p.amount, p.requested_date, p.due_date,
                  p.order_id)
        .order_by(p.request_id, p.customer_id)
    )
    found = [
        Prepayment(request_id=row.request_id, customer_id=row.customer_id, currency=row.currency,
                   requested=row.amount, requested_date=row.requested_date, due_date=row.due_date,
                   order_id=row.order_id, received=row.received, applied=-row.applied,
                   refunded=-row.refunded, cancelled_date=row.cancelled_date, as_of=as_of)
        for row in execute_sums(conn, query)
    ]
    return [f for f in found if status is None or f.status == status]


@dataclass(frozen=True)
class UnappliedBuckets:
    """Day edges of the unapplied cash's aging: (30, 60) gives ``0-30``, ``31-60``, ``60+``
    days since the money was received."""

    edges: tuple[int, ...] = DEFAULT_UNAPPLIED_EDGES

    @classmethod
    def parse(cls, text: str | None) -> UnappliedBuckets:
        """As the aging's buckets are given (``AgingRequestError`` naming ``buckets``)."""
        if text is None or not text.strip():
            return cls()
        return cls(Buckets.parse(text).edges)

    @property
    def names(self) -> list[str]:
        low, names = 0, []
        for edge in self.edges:
            names.append(f"{low}-{edge}")
            low = edge + 1
        return [*names, f"{self.edges[-1]}+"]

    def name(self, days: int) -> str:
        names = self.names
        for edge, name in zip(self.edges, names, strict=False):
            if days <= edge:
                return name
        return names[-1]


@dataclass
class UnappliedRow:
    customer_id: str
    currency: str
    buckets: dict[str, Decimal]
    total: Decimal = ZERO
    credits: int = 0  # the payments and credit notes it is made of
    oldest_received: date | None = None
    # of the total, what was paid for a prepayment request (stale advance receipts show here)
    from_prepayments: Decimal = ZERO


def unapplied_aging(conn: Connection, as_of: date, buckets: UnappliedBuckets, *,
                    known_at: datetime | None = None, customer_id: str | None = None,
                    currency: str | None = None) -> list[UnappliedRow]:
    """Every customer's unapplied cash on ``as_of`` per currency, each payment's or credit
    note's remainder in the bucket of the days since it was received."""
    m, t = movements.c, prepayment_credits.c
    visible = [m.credit.is_not(None), m.unapplied_delta != 0, m.effective_date <= as_of]
    tagged = [t.customer_id == m.customer_id, t.credit == m.credit]
    if known_at is not None:
        visible.append(m.recorded_at <= known_at)
        tagged.append(t.recorded_at <= known_at)
    if customer_id is not None:
        visible.append(m.customer_id == customer_id)
    if currency is not None:
        visible.append(m.currency == currency)
    remainder = money_sum(m.unapplied_delta)
    query = (
        select(m.customer_id, m.currency, m.credit, remainder.label("remainder"),
               func.min(case((m.kind.in_(RECEIPTS), m.effective_date))).label("received"),
               func.max(t.request_id).label("request_id"))
        .select_from(movements.outerjoin(prepayment_credits, and_(*tagged)))
        .where(*visible)
        .group_by(m.customer_id, m.currency, m.credit)
        .having(remainder != 0)
        .order_by(m.customer_id, m.currency)
    )
    rows: dict[tuple[str, str], UnappliedRow] = {}
    for customer, code, _, amount, received, request_id in execute_sums(conn, query):
        row = rows.get((customer, code))
        if row is None:
            row = rows[customer, code] = UnappliedRow(customer, code, dict.fromkeys(buckets.names, ZERO))
        since = received or as_of
        row.buckets[buckets.name((as_of - since).days)] += amount
        row.total += amount
        row.credits += 1
        row.oldest_received = since if row.oldest_received is None else min(row.oldest_received, since)
        if request_id is not None:
            row.from_prepayments += amount
    return list(rows.values())
