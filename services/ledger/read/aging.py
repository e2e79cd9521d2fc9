"""Aging: open amounts sorted into buckets by days past due, as of a date, as known at an instant.

One SQL aggregate answers a whole page of groups (customers, currencies or the values of
an invoice attribute), in one of three equivalent ways:

- **movements**: sum every movement effective on or before ``as_of`` (and recorded by
  ``known_at``). Each movement carries its invoice's due date, so the buckets are sums of
  movements, with no grouping per invoice first;
- **current**: start from the invoices' current open amounts (``ledger_invoices``) and the
  current unapplied cash (``ledger_balances``) and take back the few movements effective
  after ``as_of``. As of today almost nothing is dated later, so this reads one row per
  invoice instead of every movement ever booked;
- **spans**: the open amounts as ``current`` takes them; the disputed amounts from the row
  of each invoice whose movements all take effect on or before ``as_of``
  (``last_effective``), and per invoice only for the disputed invoices with movements on
  both sides of it (a few thousand on a book of a million), where ``current`` corrects
  every invoice touched later in a second pass over the invoices.

``auto`` takes ``movements`` with a ``known_at`` or when most movements are dated after
``as_of`` (early in the book), ``current`` when few are, ``spans`` in between; all give the
same answer to the cent (tests hold them to it).

The disputed amount of an invoice is shown capped at its open amount (a nonlinear rule),
so it is summed per invoice, only over invoices that ever had a dispute.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any, Literal

import orjson
from sqlalchemy import (
    ColumnElement,
    Date,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.engine import Connection

from services.ledger.read.disputed import shown_disputed_sql
from services.ledger.read.projections import balances, customers, disputes, invoices, movements
from shared.db import Money, execute_sums, money_sum

Strategy = Literal["auto", "current", "movements", "spans"]

DEFAULT_EDGES = (30, 60, 90, 120)
MAX_EDGES = 24
MAX_EDGE_DAYS = 36_500
# Below this many movements dated after as_of, correcting the current rows is cheapest.
CURRENT_STRATEGY_MAX_CORRECTIONS = 50_000
# Above this many (a date early in the book), summing the movements up to as_of is cheaper
# than grouping the later ones by invoice.
SPANS_STRATEGY_MAX_CORRECTIONS = 1_000_000
_ATTRIBUTE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


class AgingRequestError(ValueError):
    """A request parameter that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Buckets:
    """Ascending day edges and the bucket names that follow from them.

    Edges (30, 60) give ``current`` (not yet due: as_of - due_date <= 0), ``1-30``,
    ``31-60`` and ``60+``.
    """

    edges: tuple[int, ...] = DEFAULT_EDGES

    @classmethod
    def parse(cls, text: str | None) -> Buckets:
        if text is None or not text.strip():
            return cls()
        try:
            edges = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise AgingRequestError(
                "buckets", "must be comma-separated whole days, e.g. 30,60,90,120"
            ) from None
        if len(edges) > MAX_EDGES:
            raise AgingRequestError("buckets", f"at most {MAX_EDGES} edges")
        if edges[0] < 1 or edges[-1] > MAX_EDGE_DAYS:
            raise AgingRequestError("buckets", f"edges must be between 1 and {MAX_EDGE_DAYS} days")
        if any(b <= a for a, b in pairwise(edges)):
            raise AgingRequestError("buckets", "edges must be strictly ascending")
        return cls(edges)

    def ranges(self) -> list[tuple[str, int | None, int | None]]:
        """(name, lowest, highest days past due); None is unbounded."""
        result: list[tuple[str, int | None, int | None]] = [("current", None, 0)]
        low = 1
        for edge in self.edges:
            result.append((f"{low}-{edge}", low, edge))
            low = edge + 1
        result.append((f"{self.edges[-1]}+", low, None))
        return result

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.ranges()]


@dataclass(frozen=True)
class GroupBy:
    """``customer``, ``currency``, or an invoice attribute (``region`` or ``attributes.region``)."""

    kind: Literal["customer", "currency", "attribute"]
    attribute: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> GroupBy:
        if text is None or text == "currency":
            return cls("currency")
        if text == "customer":
            return cls("customer")
        name = text.removeprefix("attributes.")
        if not name or len(name) > 100 or not set(name) <= _ATTRIBUTE_NAME:
            raise AgingRequestError(
                "group_by", "customer, currency, or an attribute name of letters, digits and _-.:"
            )
        return cls("attribute", name)

    @property
    def label(self) -> str:
        return self.kind if self.attribute is None else f"attributes.{self.attribute}"


@dataclass(frozen=True)
class AgingRow:
    group: str | None
    currency: str
    buckets: dict[str, Decimal]
    disputed: Decimal
    total: Decimal
    unapplied_cash: Decimal | None


@dataclass(frozen=True)
class AgingPage:
    rows: list[AgingRow]
    next_cursor: str | None
    strategy: str


def encode_cursor(group: str, currency: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([group, currency])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise AgingRequestError("cursor", "not a cursor this endpoint returned")
    return value[0], value[1]


def aging(
    conn: Connection,
    as_of: date,
    *,
    known_at: datetime | None = None,
    buckets: Buckets = Buckets(),
    group_by: GroupBy = GroupBy("currency"),
    currency: str | None = None,
    limit: int = 1000,
    cursor: str | None = None,
    strategy: Strategy = "auto",
) -> AgingPage:
    """One page of aging rows, ordered by group then currency.

    By customer, the book is read a slice of customers at a time (a range of the customer
    index) until the page is full, so a page costs the same at the start or the end of a
    book of hundreds of thousands of customers.
    """
    after = decode_cursor(cursor) if cursor else None
    if strategy == "auto" and known_at is not None:
        strategy = "movements"
    elif strategy == "auto":
        later = _dated_after(conn, as_of, SPANS_STRATEGY_MAX_CORRECTIONS)
        strategy = ("current" if later < CURRENT_STRATEGY_MAX_CORRECTIONS
                    else "spans" if later < SPANS_STRATEGY_MAX_CORRECTIONS else "movements")
    if strategy in ("current", "spans") and known_at is not None:
        raise ValueError(f"the {strategy} strategy cannot answer as known at an instant")
    query = _AgingQuery(as_of, known_at, buckets, group_by, currency, strategy)
    if group_by.kind != "customer":
        rows = query.run(conn, after, None, limit + 1)
    else:
        rows, start, slice_size = [], after, max(2 * limit, 100)
        while len(rows) <= limit:
            upto = conn.execute(
                select(customers.c.customer_id)
                .where(customers.c.customer_id > (start[0] if start else ""))
                .order_by(customers.c.customer_id).offset(slice_size - 1).limit(1)
            ).scalar()
            rows += query.run(conn, start, upto, limit + 1 - len(rows))
            if upto is None:
                break
            start, slice_size = (upto, "\uffff"), min(slice_size * 2, 50_000)
    page = rows[:limit]
    last = rows[limit - 1] if len(rows) > limit else None
    return AgingPage(
        [replace(row, group=row.group or None) for row in page] if group_by.kind == "attribute" else page,
        encode_cursor(last.group or "", last.currency) if last is not None else None,
        strategy,
    )


@dataclass(frozen=True)
class _AgingQuery:
    as_of: date
    known_at: datetime | None
    buckets: Buckets
    group_by: GroupBy
    currency: str | None
    strategy: Strategy

    def group_of(self, table: Any) -> ColumnElement[Any]:
        if self.group_by.kind == "customer":
            return table.c.customer_id  # type: ignore[no-any-return]
        if self.group_by.kind == "currency":
            return table.c.currency  # type: ignore[no-any-return]
        return func.coalesce(invoices.c.attributes[self.group_by.attribute].as_string(), "")

    def _span_parts(self, narrowed: Any, by_attribute: bool) -> list[Any]:
        """The ``spans`` strategy's parts: only the invoices alive on ``as_of`` with disputes
        are taken one by one.

        The open amounts add up linearly: the rows, less every movement dated after
        ``as_of`` (which nets an invoice issued later to nothing). The disputed amount shown
        is capped per invoice: an invoice whose movements all take effect on or before
        ``as_of`` (``last_effective``) shows its row's; one with movements on both sides and
        a dispute (few: disputed invoices open around that date) is its row less its later
        movements. The unapplied cash is the current balance less what later movements changed.
        """
        zero = literal(0, Money)
        no_date = cast(null(), Date)
        as_of = self.as_of
        settled = invoices.c.last_effective <= as_of
        parts = [narrowed(invoices, select(
            self.group_of(invoices).label("grp"), invoices.c.currency, invoices.c.due_date,
            invoices.c.open_amount.label("open"), zero.label("unapplied"),
            case((settled, shown_disputed_sql(invoices.c.disputed_raw, invoices.c.open_amount)), else_=0)
            .label("disputed"),
        ).where(invoices.c.open_amount != 0))]
        parts.append(narrowed(movements, select(
            self.group_of(movements).label("grp"), movements.c.currency, movements.c.due_date,
            (-movements.c.open_delta).label("open"),
            (zero if by_attribute else -movements.c.unapplied_delta).label("unapplied"),
            zero.label("disputed"),
        ).where(movements.c.effective_date > as_of)))
        # a page of customers: their later movements by the (customer, date) index
        later = narrowed(invoices if by_attribute else movements, select(
            invoices.c.invoice_id, money_sum(movements.c.open_delta).label("open"),
            money_sum(movements.c.disputed_delta).label("disputed"),
        ).select_from(movements.join(invoices, invoices.c.invoice_id == movements.c.invoice_id))
          .where(movements.c.effective_date > as_of, invoices.c.first_effective <= as_of,
                 movements.c.invoice_id.in_(select(disputes.c.invoice_id).scalar_subquery()))
          .group_by(invoices.c.invoice_id)).subquery("disputed_spanning")
        open_amount = invoices.c.open_amount - later.c.open
        parts.append(select(
            self.group_of(invoices).label("grp"), invoices.c.currency, no_date.label("due_date"),
            zero.label("open"), zero.label("unapplied"),
            shown_disputed_sql(invoices.c.disputed_raw - later.c.disputed, open_amount).label("disputed"),
        ).select_from(later.join(invoices, invoices.c.invoice_id == later.c.invoice_id)))
        if not by_attribute:
            parts.append(narrowed(balances, select(
                self.group_of(balances).label("grp"), balances.c.currency, no_date.label("due_date"),
                zero.label("open"), balances.c.unapplied_cash.label("unapplied"), zero.label("disputed"),
            ).where(balances.c.unapplied_cash != 0)))
        return parts

    def run(
        self, conn: Connection, after: tuple[str, str] | None, upto: str | None, limit: int
    ) -> list[AgingRow]:
        """Aging rows of the groups after ``after`` and (by customer) up to customer ``upto``."""
        by_attribute = self.group_by.kind == "attribute"

        def narrowed(table: Any, query: Any) -> Any:
            """The currency filter and the key range, on one part of the union."""
            if by_attribute and table is not invoices:
                query = query.join(invoices, invoices.c.invoice_id == table.c.invoice_id)
            if self.currency is not None:
                query = query.where(table.c.currency == self.currency)
            group = self.group_of(table)
            if after is not None:
                query = query.where(
                    or_(group > after[0], and_(group == after[0], table.c.currency > after[1]))
                )
            if upto is not None:
                query = query.where(group <= upto)
            return query

        zero = literal(0, Money)
        no_date = cast(null(), Date)
        parts = []
        if self.strategy == "movements":
            visible = [movements.c.effective_date <= self.as_of]
            if self.known_at is not None:
                visible.append(movements.c.recorded_at <= self.known_at)
            parts.append(narrowed(movements, select(
                self.group_of(movements).label("grp"), movements.c.currency, movements.c.due_date,
                movements.c.open_delta.label("open"),
                # unapplied cash belongs to a customer and a currency, not to an invoice attribute
                (zero if by_attribute else movements.c.unapplied_delta).label("unapplied"),
                zero.label("disputed"),
            ).where(*visible)))
            # disputed per invoice, capped at its open amount, over the invoices with disputes
            per_invoice = narrowed(movements, select(
                movements.c.invoice_id, money_sum(movements.c.open_delta).label("open"),
                money_sum(movements.c.disputed_delta).label("disputed"),
            ).where(*visible, movements.c.invoice_id.in_(select(disputes.c.invoice_id).scalar_subquery()))
              .group_by(movements.c.invoice_id)).subquery("disputed_invoices")
            shown = shown_disputed_sql(per_invoice.c.disputed, per_invoice.c.open)
        elif self.strategy == "spans":
            parts += self._span_parts(narrowed, by_attribute)
            per_invoice = None
        else:
            # now, less what is dated after as_of
            parts.append(narrowed(invoices, select(
                self.group_of(invoices).label("grp"), invoices.c.currency, invoices.c.due_date,
                invoices.c.open_amount.label("open"), zero.label("unapplied"),
                shown_disputed_sql(invoices.c.disputed_raw, invoices.c.open_amount).label("disputed"),
            ).where(invoices.c.open_amount != 0)))
            parts.append(narrowed(movements, select(
                self.group_of(movements).label("grp"), movements.c.currency, movements.c.due_date,
                (-movements.c.open_delta).label("open"),
                (zero if by_attribute else -movements.c.unapplied_delta).label("unapplied"),
                zero.label("disputed"),
            ).where(movements.c.effective_date > self.as_of)))
            if not by_attribute:
                parts.append(narrowed(balances, select(
                    self.group_of(balances).label("grp"), balances.c.currency, no_date.label("due_date"),
                    zero.label("open"), balances.c.unapplied_cash.label("unapplied"), zero.label("disputed"),
                ).where(balances.c.unapplied_cash != 0)))
            # the disputed amounts of the invoices that later movements touch, corrected
            per_invoice = narrowed(movements, select(
                movements.c.invoice_id, money_sum(movements.c.open_delta).label("open"),
                money_sum(movements.c.disputed_delta).label("disputed"),
            ).where(movements.c.effective_date > self.as_of, movements.c.invoice_id.is_not(None))
              .group_by(movements.c.invoice_id)).subquery("later_by_invoice")
            shown = shown_disputed_sql(
                invoices.c.disputed_raw - per_invoice.c.disputed, invoices.c.open_amount - per_invoice.c.open
            ) - shown_disputed_sql(invoices.c.disputed_raw, invoices.c.open_amount)
        if per_invoice is not None:
            parts.append(narrowed(invoices, select(
                self.group_of(invoices).label("grp"), invoices.c.currency, no_date.label("due_date"),
                zero.label("open"), zero.label("unapplied"), shown.label("disputed"),
            ).select_from(per_invoice.join(invoices, invoices.c.invoice_id == per_invoice.c.invoice_id))))

        # each part is summed on its own (parallel hash aggregates on PostgreSQL), then the few
        # partial rows of each group are added up
        ranges = self.buckets.ranges()
        partials = []
        for part in parts:
            row = part.subquery()
            partials.append(
                select(
                    row.c.grp, row.c.currency, money_sum(row.c.disputed).label("disputed"),
                    money_sum(row.c.open).label("open"), money_sum(row.c.unapplied).label("unapplied"),
                    *[money_sum(case((_in_bucket(row.c.due_date, self.as_of, low, high), row.c.open),
                                     else_=0)).label(f"b{i}") for i, (_, low, high) in enumerate(ranges)],
                ).group_by(row.c.grp, row.c.currency)
            )
        rows = union_all(*partials).subquery("aging_rows")
        query = (
            select(rows.c.grp, rows.c.currency, money_sum(rows.c.disputed), money_sum(rows.c.open),
                   money_sum(rows.c.unapplied), *[money_sum(rows.c[f"b{i}"]) for i in range(len(ranges))])
            .group_by(rows.c.grp, rows.c.currency)
            .having(or_(money_sum(rows.c.open) != 0, money_sum(rows.c.unapplied) != 0))
            .order_by(rows.c.grp, rows.c.currency)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            # compiling this one-off aggregate (JIT) costs more than it saves: a second on 1M rows
            conn.execute(text("SET LOCAL jit = off"))
        names = self.buckets.names
        return [
            AgingRow(
                group=row[0], currency=row[1],
                buckets={name: row[5 + i] for i, name in enumerate(names)},
                disputed=row[2], total=row[3], unapplied_cash=None if by_attribute else row[4],
            )
            for row in execute_sums(conn, query)
        ]


def _in_bucket(due_date: Any, as_of: date, low: int | None, high: int | None) -> ColumnElement[bool]:
    """days past due (as_of - due_date) within [low, high], as a range of due dates."""
    conditions = []
    if high is not None:
        conditions.append(due_date >= as_of - timedelta(days=high))
    if low is not None:
        conditions.append(due_date <= as_of - timedelta(days=low))
    return and_(*conditions)


def _dated_after(conn: Connection, as_of: date, limit: int) -> int:
    """How many movements are effective after as_of, counted up to ``limit`` only (an index-only
    scan of the date index: ~10 ms per 100,000)."""
    later = select(movements.c.id).where(movements.c.effective_date > as_of).limit(limit).subquery()
    return int(conn.execute(select(func.count()).select_from(later)).scalar_one())
