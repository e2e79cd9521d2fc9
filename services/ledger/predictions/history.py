"""The invoices of customers as the predictions read them: ``InvoiceRecord``s built from the
ledger's read models, every change with the date it took effect and the instant it was
recorded (``ledger_movements``), so that ``features.known`` can look at them as of any date
as known at any instant.

One query per call: the customers' invoices and their movements, ordered, grouped in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from services.ledger.predictions.features import Change, InvoiceRecord
from services.ledger.read.projections import invoices, movements

# the movements' kinds as the predictions read them (the issue itself is the record)
CHANGE_KINDS = {
    "applied": "settlement", "released": "settlement", "discount": "settlement",
    "discount_released": "settlement", "adjusted": "adjustment", "cancelled": "cancellation",
    "written_off": "write_off", "dispute_opened": "dispute", "dispute_closed": "dispute",
}


def _utc(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def customer_records(conn: Connection, customer_ids: Iterable[str]) -> dict[str, list[InvoiceRecord]]:
    """Every invoice of these customers, by customer, in issue order."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    i, m = invoices.c, movements.c
    query = (select(m.customer_id, m.invoice_id, m.kind, m.open_delta, m.disputed_delta, m.effective_date,
                    m.recorded_at, i.due_date, i.terms, i.attributes, i.currency)
             .join(invoices, i.invoice_id == m.invoice_id)
             .where(m.customer_id.in_(ids), m.invoice_id.is_not(None))
             .order_by(m.customer_id, m.invoice_id, m.position, m.id))
    built: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in conn.execute(query):
        found = built[row.customer_id].get(row.invoice_id)
        if row.kind == "invoice_issued":
            terms = row.terms or {}
            built[row.customer_id][row.invoice_id] = {
                "invoice_id": row.invoice_id, "amount": row.open_delta, "issue_date": row.effective_date,
                "due_date": row.due_date, "recorded": _utc(row.recorded_at), "changes": [],
                "has_cash_discount": bool(terms.get("discount_percent")), "attributes": row.attributes or {},
                "currency": row.currency}
        elif found is not None and row.kind in CHANGE_KINDS:
            found["changes"].append(Change(CHANGE_KINDS[row.kind], row.effective_date, _utc(row.recorded_at),
                                           open_delta=row.open_delta, disputed_delta=row.disputed_delta))
    return {customer: sorted((InvoiceRecord(**{**r, "changes": tuple(r["changes"])}) for r in found.values()),
                             key=lambda r: (r.issue_date, r.invoice_id))
            for customer, found in built.items()}
