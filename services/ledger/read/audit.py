"""The audit trail: a customer's or an invoice's history, straight from the event store.

Each entry is one stored domain event of the customer's account, in the order it was
recorded: when it was recorded, the business date it took effect, what it decided (its
data) and the inbound message behind it (source, id, type, topic, partition, offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from services.ledger.application import LedgerApplication
from services.ledger.domain import account_id
from services.ledger.read.projections import disputes, invoices

# the library's own attributes of every event, shown in their own fields
_ENVELOPE = ("originator_id", "originator_version", "timestamp", "origin")
_MESSAGE_FIELDS = ("source", "id", "type", "topic", "partition", "offset")


@dataclass(frozen=True)
class AuditEntry:
    version: int
    recorded_at: datetime
    effective_date: date | None
    type: str
    data: dict[str, Any]
    message: dict[str, Any] | None


def customer_history(
    app: LedgerApplication, customer_id: str, *, after: int = 0, limit: int | None = None
) -> list[AuditEntry]:
    """The account's events after version ``after``, oldest first (empty if no such customer)."""
    events = app.events.get(account_id(customer_id), gt=after or None, limit=limit)
    return [_entry(event) for event in events]


def invoice_customer(conn: Connection, invoice_id: str) -> str | None:
    """Whose invoice it is: from the invoices, or from a dispute waiting for the invoice."""
    for table in (invoices, disputes):
        found = conn.execute(
            select(table.c.customer_id).where(table.c.invoice_id == invoice_id).limit(1)
        ).scalar()
        if found is not None:
            return str(found)
    return None


def invoice_history(app: LedgerApplication, customer_id: str, invoice_id: str) -> list[AuditEntry]:
    """The events of the customer's account that concern the invoice, oldest first."""
    return [
        _entry(event) for event in app.events.get(account_id(customer_id))
        if concerns(event.__dict__, invoice_id)
    ]


def concerns(state: dict[str, Any], invoice_id: str) -> bool:
    """Does an event name the invoice, move money on it, or hold money back for it?"""
    if state.get("invoice_id") == invoice_id or invoice_id in (state.get("touched") or {}):
        return True
    for key in ("invoice", "dispute"):
        if (state.get(key) or {}).get("invoice_id") == invoice_id:
            return True
    credit = state.get("credit") or {}
    if invoice_id in (credit.get("earmarks") or {}):
        return True
    if (credit.get("details") or {}).get("invoice_id") == invoice_id:
        return True
    return any(
        entry.get("invoice") == invoice_id
        for key in ("applications", "releases") for entry in state.get(key) or ()
    )


def effective_date(state: dict[str, Any]) -> date | None:
    """The business date an event took effect on (None for bookkeeping events)."""
    text = (
        state.get("effective_date")
        or state.get("resolved_date")
        or (state.get("invoice") or {}).get("issue_date")
        or (state.get("credit") or {}).get("date")
        or (state.get("dispute") or {}).get("opened_date")
    )
    return date.fromisoformat(text) if isinstance(text, str) else None


def _entry(event: Any) -> AuditEntry:
    state = event.__dict__
    origin = state.get("origin")
    return AuditEntry(
        version=event.originator_version,
        recorded_at=event.timestamp,
        effective_date=effective_date(state),
        type=type(event).__name__,
        data={k: v for k, v in state.items() if k not in _ENVELOPE},
        message={k: origin.get(k) for k in _MESSAGE_FIELDS} if origin else None,
    )
