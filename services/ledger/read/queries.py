"""Read-side queries over the ledger's read models (as of a business date, as known at an instant).

The console's hot reads (a balance, open items, an invoice) are plans (``shared.hot_reads``):
the service runs them on its event loop; ``balances``, ``open_items`` and ``invoice`` run
them on a connection.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, case, select
from sqlalchemy.engine import Connection

from services.ledger.domain.book import invoice_status
from services.ledger.read.disputed import shown_disputed
from services.ledger.read.projections import customers, invoices, movements
from shared.db import PreparedRead, money_sum
from shared.hot_reads import ReadPlan, run_plan
from shared.money import ZERO

T = TypeVar("T")

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


# The reads below are each built once (per shape: with or without ``as_of``/``known_at``)
# and compiled once per dialect (``PreparedRead``): building a statement per request cost
# SQLAlchemy several times what the database takes to answer it.


_AS_OF = bindparam("as_of", type_=movements.c.effective_date.type)
_KNOWN_AT = bindparam("known_at", type_=movements.c.recorded_at.type)


def _visible(as_of: bool, known_at: bool) -> list[Any]:
    """``visible`` with bind parameters ``as_of``/``known_at`` for the limits that are given."""
    conditions = []
    if as_of:
        conditions.append(movements.c.effective_date <= _AS_OF)
    if known_at:
        conditions.append(movements.c.recorded_at <= _KNOWN_AT)
    return conditions


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


_CUSTOMER_EXISTS = PreparedRead(
    select(customers.c.customer_id).where(customers.c.customer_id == bindparam("customer_id"))
)


def customer_exists(conn: Connection, customer_id: str) -> bool:
    return bool(_CUSTOMER_EXISTS.all(conn, {"customer_id": customer_id}))


def of_customer(customer_id: str, rows: ReadPlan[list[T]]) -> ReadPlan[list[T] | None]:
    """A customer's rows, or None if there is no such customer.

    A customer with rows exists (its row is projected with its first movement): the lookup
    is made only when there are none.
    """
    found = yield from rows
    if found:
        return found
    return found if (yield _CUSTOMER_EXISTS, {"customer_id": customer_id}) else None


@cache
def _balances(known_at: bool) -> PreparedRead:
    overdue = case((movements.c.due_date < _AS_OF, movements.c.open_delta), else_=0)
    return PreparedRead(
        select(
            movements.c.currency,
            movements.c.invoice_id,
            money_sum(movements.c.open_delta).label("open"),
            money_sum(overdue).label("overdue"),
            money_sum(movements.c.disputed_delta).label("disputed"),
            money_sum(movements.c.unapplied_delta).label("unapplied"),
        )
        .where(movements.c.customer_id == bindparam("customer_id"), *_visible(True, known_at))
        .group_by(movements.c.currency, movements.c.invoice_id)
    )


def balances(
    conn: Connection, customer_id: str, as_of: date, known_at: datetime | None = None
) -> list[dict[str, Any]]:
    return run_plan(conn, balances_plan(customer_id, as_of, known_at))


def balances_plan(customer_id: str, as_of: date, known_at: datetime | None = None
                  ) -> ReadPlan[list[dict[str, Any]]]:
    """Per currency: open, overdue (due before as_of), disputed and unapplied, from movements."""
    rows = yield (_balances(known_at is not None),
                  _given(customer_id=customer_id, as_of=as_of, known_at=known_at))
    totals: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: {"open_amount": ZERO, "overdue_amount": ZERO, "disputed_amount": ZERO,
                 "unapplied_cash": ZERO}
    )
    for currency, _invoice, open_, overdue, disputed, unapplied in rows:
        total = totals[currency]
        total["open_amount"] += open_
        total["overdue_amount"] += overdue
        total["unapplied_cash"] += unapplied
        total["disputed_amount"] += shown_disputed(disputed, open_)
    return [{"currency": currency, **values} for currency, values in sorted(totals.items())]


@cache
def _open_items(known_at: bool) -> PreparedRead:
    per_invoice = (
        select(
            movements.c.invoice_id,
            money_sum(movements.c.open_delta).label("open_amount"),
            money_sum(movements.c.disputed_delta).label("disputed"),
            money_sum(case((movements.c.kind.in_(INVOICED_KINDS), movements.c.open_delta), else_=0))
            .label("amount"),
        )
        .where(movements.c.customer_id == bindparam("customer_id"), movements.c.invoice_id.is_not(None),
               *_visible(True, known_at))
        .group_by(movements.c.invoice_id)
        .having(money_sum(movements.c.open_delta) != 0)
        .subquery()
    )
    return PreparedRead(
        select(per_invoice, invoices.c.currency, invoices.c.issue_date, invoices.c.due_date,
               invoices.c.reference, invoices.c.attributes)
        .join(invoices, invoices.c.invoice_id == per_invoice.c.invoice_id)
        .order_by(invoices.c.due_date, invoices.c.issue_date, invoices.c.invoice_id)
    )


def open_items(
    conn: Connection, customer_id: str, as_of: date, known_at: datetime | None = None
) -> list[dict[str, Any]]:
    return run_plan(conn, open_items_plan(customer_id, as_of, known_at))


def open_items_plan(customer_id: str, as_of: date, known_at: datetime | None = None
                    ) -> ReadPlan[list[dict[str, Any]]]:
    """The customer's invoices open on ``as_of`` (as known at ``known_at``), oldest due first."""
    read = _open_items(known_at is not None)
    keys = read.keys
    found = yield read, _given(customer_id=customer_id, as_of=as_of, known_at=known_at)
    rows = [dict(zip(keys, row, strict=True)) for row in found]
    return [
        {
            **row,
            "disputed_amount": shown_disputed(row["disputed"], row["open_amount"]),
            "days_past_due": (as_of - row["due_date"]).days,
            "status": "partially_paid" if row["open_amount"] < row["amount"] else "open",
        }
        for row in rows
    ]


_INVOICE = PreparedRead(select(invoices).where(invoices.c.invoice_id == bindparam("invoice_id")))


@cache
def _invoice_movements(as_of: bool, known_at: bool) -> PreparedRead:
    return PreparedRead(
        select(movements.c.kind, movements.c.effective_date,
               money_sum(movements.c.open_delta).label("open"),
               money_sum(movements.c.disputed_delta).label("disputed"))
        .where(movements.c.invoice_id == bindparam("invoice_id"), *_visible(as_of, known_at))
        .group_by(movements.c.kind, movements.c.effective_date)
    )


def invoice(
    conn: Connection, invoice_id: str, as_of: date | None = None, known_at: datetime | None = None
) -> dict[str, Any] | None:
    return run_plan(conn, invoice_plan(invoice_id, as_of, known_at))


def invoice_plan(invoice_id: str, as_of: date | None = None, known_at: datetime | None = None
                 ) -> ReadPlan[dict[str, Any] | None]:
    """The invoice now, or as of a date / as known at an instant (None if not issued by then).

    The dated answer is summed from the invoice's movements, by the domain's rules: the
    settled date is the last effective date on which the open amount changed.
    """
    found = yield _INVOICE, {"invoice_id": invoice_id}
    if not found:
        return None
    current = dict(zip(_INVOICE.keys, found[0], strict=True))
    if as_of is None and known_at is None:
        return current
    by_kind_and_date = yield (_invoice_movements(as_of is not None, known_at is not None),
                              _given(invoice_id=invoice_id, as_of=as_of, known_at=known_at))
    if not any(kind == "invoice_issued" for kind, *_ in by_kind_and_date):
        return None
    kinds: dict[str, Decimal] = defaultdict(lambda: ZERO)
    net_by_date: dict[date, Decimal] = defaultdict(lambda: ZERO)
    disputed = ZERO
    for kind, effective_date, open_, disputed_delta in by_kind_and_date:
        kinds[kind] += open_
        disputed += disputed_delta
        if kind != "cancelled":
            net_by_date[effective_date] += open_
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
