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
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from services.ledger.predictions.features import Change, InvoiceRecord
from services.ledger.read.projections import invoices, movements

CHUNK = 5_000

# the movements' kinds as the predictions read them (the issue itself is the record)
CHANGE_KINDS = {
    "applied": "settlement", "released": "settlement", "discount": "settlement",
    "discount_released": "settlement", "adjusted": "adjustment", "cancelled": "cancellation",
    "written_off": "write_off", "dispute_opened": "dispute", "dispute_closed": "dispute",
}


def _utc(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


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
    # two queries, not a join: an invoice's terms (JSON) are read once, not once a movement. (Its
    # attributes are not read: no feature uses them yet, and parsing them cost a tenth of a
    # prediction of a customer with hundreds of invoices.) Rows fetched at once, not one by one.
    about = {row.invoice_id: row for row in conn.execute(
        select(i.invoice_id, i.due_date, i.terms, i.currency).where(i.customer_id.in_(ids))).all()}
    # every movement of the customers, those of no invoice too: they count in the version
    query = (select(m.customer_id, m.invoice_id, m.kind, m.open_delta, m.disputed_delta, m.effective_date,
                    m.recorded_at, m.position)
             .where(m.customer_id.in_(ids))
             .order_by(m.customer_id, m.invoice_id, m.position, m.id))
    built: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    versions: dict[str, tuple[int, int]] = {}
    for row in conn.execute(query).all():
        count, newest = versions.get(row.customer_id, (0, 0))
        versions[row.customer_id] = (count + 1, max(newest, row.position or 0))
        if row.invoice_id is None:
            continue
        found = built[row.customer_id].get(row.invoice_id)
        if row.kind == "invoice_issued":
            invoice = about.get(row.invoice_id)
            if invoice is None:
                continue
            terms = invoice.terms or {}
            built[row.customer_id][row.invoice_id] = {
                "invoice_id": row.invoice_id, "amount": row.open_delta, "issue_date": row.effective_date,
                "due_date": invoice.due_date, "recorded": _utc(row.recorded_at), "changes": [],
                "has_cash_discount": bool(terms.get("discount_percent")), "currency": invoice.currency}
        elif found is not None and row.kind in CHANGE_KINDS:
            found["changes"].append(Change(CHANGE_KINDS[row.kind], row.effective_date, _utc(row.recorded_at),
                                           open_delta=row.open_delta, disputed_delta=row.disputed_delta))
    records = {customer: sorted((InvoiceRecord(**{**r, "changes": tuple(r["changes"])})
                                 for r in found.values()), key=lambda r: (r.issue_date, r.invoice_id))
               for customer, found in built.items()}
    return records, versions


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
