"""Domain events to ``ar.ledger.events`` (contract: ledger.invoice_opened, ... ).

Every outbound event carries the customer id, the ids involved, amounts and effective
dates, and the resulting open amount of every invoice it touched. Ids are derived from the
stored event (account id, version, index), so a re-sent message has the same id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.envelope import encode_event
from shared.money import ZERO
from shared.outbox import Outbound

TOPIC = "ar.ledger.events"
SOURCE = "receivables/ledger"


def _invoices(event: Any) -> list[dict[str, Any]]:
    return [{"invoice_id": invoice_id, **outcome} for invoice_id, outcome in event.touched.items()]


def _applied(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"credit": e["credit"], "invoice_id": e["invoice"], "amount": e["amount"],
         "discount": e["discount"], "effective_date": e["date"]}
        for e in entries
    ]


def translate(event: Any) -> list[Outbound]:
    """The outbound messages one stored domain event gives rise to (possibly none)."""
    kind = type(event).__name__
    if kind == "Opened" or not type(event).__qualname__.startswith("CustomerAccount."):
        return []  # an account's bookkeeping, or no account's event at all (a replay's record)
    customer_id = event.origin["subject"]
    base = {"customer_id": customer_id, "origin": {k: event.origin[k] for k in ("source", "id", "type")}}
    messages: list[tuple[str, dict[str, Any]]] = []
    applications = getattr(event, "applications", [])
    if kind == "InvoiceIssued":
        messages.append(("ledger.invoice_opened", {
            **base, **event.invoice, "effective_date": event.invoice["issue_date"],
            "invoices": _invoices(event), "applied": _applied(applications),
        }))
    elif kind in ("InvoiceAdjusted", "InvoiceCancelled", "InvoiceWrittenOff"):
        change = {"InvoiceAdjusted": "adjusted", "InvoiceCancelled": "cancelled",
                  "InvoiceWrittenOff": "written_off"}[kind]
        data = {**base, "change": change, "invoice_id": event.invoice_id,
                "effective_date": event.effective_date, "reason": event.reason,
                "released": _applied(getattr(event, "releases", [])), "applied": _applied(applications),
                "invoices": _invoices(event)}
        if kind == "InvoiceAdjusted":
            data["new_amount"] = event.new_amount
        if kind == "InvoiceWrittenOff":
            data["amount"] = event.amount
        messages.append(("ledger.invoice_changed", data))
    elif kind == "CreditReceived":
        credit = event.credit
        messages.append(("ledger.payment_applied", {
            **base, "credit": credit["key"], "credit_kind": credit["kind"],
            ("payment_id" if credit["kind"] == "payment" else "credit_id"): credit["source_id"],
            "currency": credit["currency"], "amount": credit["amount"], "effective_date": credit["date"],
            "applied": _applied(applications), "invoices": _invoices(event),
        }))
    elif kind == "PaymentReversed":
        messages.append(("ledger.invoice_changed", {
            **base, "change": "payment_reversed", "payment_id": event.payment_id,
            "effective_date": event.effective_date, "reason": event.reason,
            "released": _applied(event.releases), "applied": _applied(applications),
            "invoices": _invoices(event),
        }))
    elif kind == "DisputeOpened":
        messages.append(("ledger.invoice_disputed", {
            **base, **event.dispute, "effective_date": event.dispute["opened_date"],
        }))
    elif kind == "DisputeResolved":
        messages.append(("ledger.dispute_closed", {
            **base, "dispute_id": event.dispute_id, "invoice_id": event.invoice_id,
            "outcome": event.outcome, "effective_date": event.resolved_date,
            "credited_amount": event.credit["amount"] if event.credit else None,
            "applied": _applied(applications), "invoices": _invoices(event),
        }))
    elif kind == "ProfileUpdated":
        messages.append(("ledger.customer_updated", {**base, **event.profile}))
    for invoice_id, outcome in getattr(event, "touched", {}).items():
        if outcome["status"] in ("paid", "written_off") and outcome["settled_date"]:
            messages.append(("ledger.invoice_settled", {
                **base, "invoice_id": invoice_id, "settled_date": outcome["settled_date"],
                "status": outcome["status"], "open_amount": outcome["open_amount"],
                "effective_date": outcome["settled_date"],
            }))
    cash = unapplied_change(event) if kind != "ProfileUpdated" else None
    if cash is not None:
        messages.append(("ledger.unapplied_cash_changed", {
            **base, "currency": cash[0], "change": str(cash[1]),
            "effective_date": _effective_date(event), "cause": kind,
        }))
    prefix = f"{event.originator_id}:{event.originator_version}"
    return [
        Outbound(TOPIC, customer_id, encode_event(
            event_id=f"ledger:{prefix}:{index}", source=SOURCE, event_type=event_type,
            subject=customer_id, data=data, time=event.timestamp,
        ))
        for index, (event_type, data) in enumerate(messages)
    ]


def unapplied_change(event: Any) -> tuple[str, Decimal] | None:
    """(currency, signed change) of the customer's unapplied cash caused by an event."""
    kind = type(event).__name__
    applied = sum((Decimal(a["amount"]) for a in getattr(event, "applications", [])), ZERO)
    released = sum((Decimal(r["amount"]) for r in getattr(event, "releases", [])), ZERO)
    delta = released - applied
    currency = None
    credit = getattr(event, "credit", None)
    if credit:
        delta += Decimal(credit["amount"])
        currency = credit["currency"]
    if kind == "PaymentReversed":
        delta -= Decimal(event.forfeited)
    if delta == ZERO:
        return None
    if currency is None:
        currency = next(iter(event.touched.values()))["currency"] if event.touched else None
    return (currency or "", delta)


def _effective_date(event: Any) -> str:
    for name in ("effective_date", "resolved_date"):
        if hasattr(event, name):
            return str(getattr(event, name))
    if getattr(event, "credit", None):
        return str(event.credit["date"])
    return str(event.invoice["issue_date"])
