"""The invoices of customers as the predictions read them: ``InvoiceRecord``s built from the
ledger's read models, every change with the date it took effect and the instant it was
recorded (``ledger_movements``), so that ``features.known`` can look at them as of any date
as known at any instant.

Two queries per call: the customers' invoices, and their movements ordered, grouped in Python.
``RecordsCache`` keeps the customers last asked for between requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, func, select, type_coerce

from services.ledger.predictions.features import Change, InvoiceRecord
from services.ledger.read.projections import invoices, movements
from shared.db import money_of_units

CHUNK = 5_000

# the movements' kinds as the predictions read them (the issue itself is the record)
CHANGE_KINDS = {
    "applied": "settlement", "released": "settlement", "discount": "settlement",
    "discount_released": "settlement", "adjusted": "adjustment", "cancelled": "cancellation",
    "written_off": "write_off", "dispute_opened": "dispute", "dispute_closed": "dispute",
}


def customer_records(conn: Connection, customer_ids: Iterable[str]) -> dict[str, list[InvoiceRecord]]:
    """Every invoice of these customers, by customer, in issue order; read ``CHUNK`` customers a
    query (a query takes at most 32,766 parameters in SQLite, 65,535 in PostgreSQL)."""
    ids = sorted(set(customer_ids))
    found: dict[str, list[InvoiceRecord]] = {}
    for start in range(0, len(ids), CHUNK):
        found.update(_records(conn, ids[start:start + CHUNK])[0])
    return found


def _records(conn: Connection, ids: list[str]
             ) -> tuple[dict[str, list[InvoiceRecord]], dict[str, tuple[int, int]]]:
    """The customers' records, and each one's ``customer_version`` as of the same read."""
    i, m = invoices.c, movements.c
    # Two queries, not a join (the planner looks an invoice up for every movement): the invoices'
    # one term read, whether they have a cash discount (the terms' other fields and the
    # attributes are not parsed: no feature reads them, and parsing them was a fifth of the
    # read), then every movement of the customers, those of no invoice too: they count in the
    # version. Money as its raw units, made Decimal here; rows unpacked as tuples: per row,
    # SQLAlchemy's conversions and attribute lookups were most of the read's Python time.
    discount = i.terms["discount_percent"].as_string()
    about = {invoice_id: (due, currency, _discounted(percent)) for invoice_id, due, currency, percent in
             conn.execute(select(i.invoice_id, i.due_date, i.currency, discount)
                          .where(i.customer_id.in_(ids))).all()}
    query = (select(m.customer_id, m.invoice_id, m.kind, type_coerce(m.open_delta, BigInteger),
                    type_coerce(m.disputed_delta, BigInteger), m.effective_date, m.recorded_at, m.position)
             .where(m.customer_id.in_(ids))
             # in the order recorded (an invoice's issue before its changes), grouped here: sorting
             # by the ids' text in SQL cost more than all else the database does for this query
             .order_by(m.position, m.id))
    built: dict[str, dict[str, tuple[dict[str, Any], list[Change]]]] = defaultdict(dict)
    versions: dict[str, tuple[int, int]] = {}
    for customer, invoice_id, kind, open_units, disputed_units, effective, recorded, position in \
            conn.execute(query).all():
        count, newest = versions.get(customer, (0, 0))
        versions[customer] = (count + 1, max(newest, position or 0))
        if invoice_id is None:
            continue
        if recorded.tzinfo is None:
            recorded = recorded.replace(tzinfo=UTC)
        if kind == "invoice_issued":
            if (invoice := about.get(invoice_id)) is not None:
                due, currency, discounted = invoice
                built[customer][invoice_id] = ({
                    "invoice_id": invoice_id, "amount": money_of_units(open_units), "issue_date": effective,
                    "due_date": due, "recorded": recorded, "has_cash_discount": discounted,
                    "currency": currency}, [])
        elif kind in CHANGE_KINDS and (found := built[customer].get(invoice_id)) is not None:
            found[1].append(Change(CHANGE_KINDS[kind], effective, recorded, money_of_units(open_units),
                                   money_of_units(disputed_units)))
    records = {customer: sorted((InvoiceRecord(**fields, changes=tuple(changes))
                                 for fields, changes in built[customer].values()), key=_in_issue_order)
               for customer in sorted(built)}
    return records, versions


def _in_issue_order(record: InvoiceRecord) -> tuple[date, str]:
    return record.issue_date, record.invoice_id


def _discounted(percent: object) -> bool:
    """Whether the terms' ``discount_percent`` (its JSON text; None: not given) offers a discount."""
    return percent not in (None, "") and Decimal(str(percent)) > 0


def customer_version(conn: Connection, customer_id: str) -> tuple[int, int]:
    """What changes whenever anything of the customer's invoices is recorded (or replayed)."""
    m = movements.c
    row = conn.execute(select(func.count(), func.max(m.position)).where(m.customer_id == customer_id)).one()
    return int(row[0]), int(row[1] or 0)


class RecordsCache:
    """Customers' records kept between requests (the newest ``size`` customers asked for), read
    again once ``customer_version`` says something was recorded since."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[str, str], tuple[tuple[int, int], list[InvoiceRecord]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Connection, customer_id: str) -> list[InvoiceRecord] | None:
        key = (str(conn.engine.url), customer_id)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] == customer_version(conn, customer_id):
            with self._lock:
                if key in self._kept:
                    self._kept.move_to_end(key)
            return kept[1]
        # (not kept, or changed: the records and their version in one read)
        found, versions = _records(conn, [customer_id])
        records, version = found.get(customer_id), versions.get(customer_id, (0, 0))
        if records is not None:
            with self._lock:
                self._kept[key] = (version, records)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return records

    def clear(self) -> None:
        """Forget every customer kept (the next read of each goes to the database)."""
        with self._lock:
            self._kept.clear()
