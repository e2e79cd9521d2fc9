"""Domain events to ``ar.ledger.events`` (contract: ledger.invoice_opened, ... ).

Every outbound event carries the customer id, the ids involved, amounts and effective
dates, and the resulting open amount of every invoice it touched. Ids are derived from the
stored event (account id, version, index), so a re-sent message has the same id.
"""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal
from typing import Any, cast

from eventsourcing.persistence import Notification, find_id_convertor
from eventsourcing.utils import resolve_topic

from shared.envelope import encode_event, format_time
from shared.eventstore import TrackedApplication
from shared.money import ZERO
from shared.outbox import Outbound

TOPIC = "ar.ledger.events"
SOURCE = "receivables/ledger"


def _invoices(touched: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"invoice_id": invoice_id, **outcome} for invoice_id, outcome in touched.items()]


def _applied(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"credit": e["credit"], "invoice_id": e["invoice"], "amount": e["amount"],
         "discount": e["discount"], "effective_date": e["date"]}
        for e in entries
    ]


def translate(event: Any) -> list[Outbound]:
    """The outbound messages one domain event gives rise to (possibly none)."""
    cls = type(event)
    if not cls.__qualname__.startswith("CustomerAccount."):
        return []  # no account's event (a replay's record)
    return _translate(cls.__name__, vars(event), event.originator_id, event.originator_version)


class StoredTranslator:
    """``translate`` straight from a stored event: its state, not a domain event object.

    The relay only reads the event's fields, so building the object (the mapper's topic
    lookup, id conversion and attribute copy) is a third of its decoding cost. Events
    stored with a cipher or compressor, or of an upcast class, go through the mapper.
    """

    def __init__(self, app: TrackedApplication) -> None:
        self.mapper = app.mapper
        self.direct = self.mapper.cipher is None and self.mapper.compressor is None
        self.decode_state = self.mapper.transcoder.decode
        # topic -> (event name, its class), or None for no account's event
        self._kinds: dict[str, tuple[str, type[Any]] | None] = {}

    def __call__(self, notification: Notification) -> list[Outbound]:
        try:
            kind = self._kinds[notification.topic]
        except KeyError:
            cls = resolve_topic(notification.topic)
            kind = self._kinds[notification.topic] = (
                (cls.__name__, cls) if cls.__qualname__.startswith("CustomerAccount.") else None
            )
        if kind is None:
            return []
        if not self.direct or getattr(kind[1], "class_version", 1) != 1:
            return translate(self.mapper.to_domain_event(notification))
        originator_id = notification.originator_id
        # as the mapper gives it to the domain event (SQLite stores the id as text)
        convert = find_id_convertor(cast(Hashable, kind[1]), cast(Hashable, type(originator_id)))
        originator_id = convert(originator_id)
        return _translate(kind[0], self.decode_state(notification.state), originator_id,
                          notification.originator_version)


def _translate(
    kind: str, event: dict[str, Any], originator_id: Any, originator_version: Any
) -> list[Outbound]:
    """The messages of one account event, given its name and its fields (stored state)."""
    if kind == "Opened":
        return []  # an account's bookkeeping
    origin = event["origin"]
    customer_id = origin["subject"]
    base = {"customer_id": customer_id, "origin": {k: origin[k] for k in ("source", "id", "type")}}
    messages: list[tuple[str, dict[str, Any]]] = []
    applications = event.get("applications", [])
    touched = event.get("touched", {})
    if kind == "InvoiceIssued":
        messages.append(("ledger.invoice_opened", {
            **base, **event["invoice"], "effective_date": event["invoice"]["issue_date"],
            "invoices": _invoices(touched), "applied": _applied(applications),
        }))
    elif kind in ("InvoiceAdjusted", "InvoiceCancelled", "InvoiceWrittenOff"):
        change = {"InvoiceAdjusted": "adjusted", "InvoiceCancelled": "cancelled",
                  "InvoiceWrittenOff": "written_off"}[kind]
        data = {**base, "change": change, "invoice_id": event["invoice_id"],
                "effective_date": event["effective_date"], "reason": event["reason"],
                "released": _applied(event.get("releases", [])), "applied": _applied(applications),
                "invoices": _invoices(touched)}
        if kind == "InvoiceAdjusted":
            data["new_amount"] = event["new_amount"]
        if kind == "InvoiceWrittenOff":
            data["amount"] = event["amount"]
        messages.append(("ledger.invoice_changed", data))
    elif kind == "CreditReceived":
        credit = event["credit"]
        messages.append(("ledger.payment_applied", {
            **base, "credit": credit["key"], "credit_kind": credit["kind"],
            ("payment_id" if credit["kind"] == "payment" else "credit_id"): credit["source_id"],
            "currency": credit["currency"], "amount": credit["amount"], "effective_date": credit["date"],
            "applied": _applied(applications), "invoices": _invoices(touched),
        }))
    elif kind == "PaymentReversed":
        messages.append(("ledger.invoice_changed", {
            **base, "change": "payment_reversed", "payment_id": event["payment_id"],
            "effective_date": event["effective_date"], "reason": event["reason"],
            "released": _applied(event["releases"]), "applied": _applied(applications),
            "invoices": _invoices(touched),
        }))
    elif kind == "PrepaymentRequested":
        request = event["request"]
        messages.append(("ledger.prepayment_requested", {
            **base, **request, "effective_date": request["requested_date"]}))
    elif kind == "PrepaymentCancelled":
        messages.append(("ledger.prepayment_cancelled", {
            **base, "request_id": event["request_id"], "currency": event["currency"],
            "effective_date": event["effective_date"], "reason": event["reason"],
            "released": event["untagged"], "applied": _applied(applications),
            "invoices": _invoices(touched)}))
    elif kind == "PaymentRefunded":
        messages.append(("ledger.refund_issued", {
            **base, "refund_id": event["refund_id"], "currency": event["currency"], "amount": event["amount"],
            "effective_date": event["effective_date"], "payment_id": event["payment_id"],
            "taken": event["takes"],
        }))
    elif kind == "DisputeOpened":
        messages.append(("ledger.invoice_disputed", {
            **base, **event["dispute"], "effective_date": event["dispute"]["opened_date"],
        }))
    elif kind == "DisputeResolved":
        messages.append(("ledger.dispute_closed", {
            **base, "dispute_id": event["dispute_id"], "invoice_id": event["invoice_id"],
            "outcome": event["outcome"], "effective_date": event["resolved_date"],
            "credited_amount": event["credit"]["amount"] if event["credit"] else None,
            "applied": _applied(applications), "invoices": _invoices(touched),
        }))
    elif kind == "ProfileUpdated":
        # the ledger's origin wins over a profile field of that name: followers dedupe on it
        messages.append(("ledger.customer_updated", {**event["profile"], **base}))
    if kind == "CreditReceived" and event["credit"]["details"].get("prepayment_request_id"):
        credit = event["credit"]
        messages.append(("ledger.prepayment_received", {
            **base, "request_id": credit["details"]["prepayment_request_id"],
            "payment_id": credit["source_id"], "currency": credit["currency"], "amount": credit["amount"],
            "effective_date": credit["date"]}))
    prepaid = [a for a in applications if a.get("prepayment")]
    if prepaid:
        paid = {a["invoice"] for a in prepaid}
        messages.append(("ledger.prepayment_applied", {
            **base, "effective_date": max(a["date"] for a in prepaid), "applied": _applied(prepaid),
            "invoices": _invoices({i: o for i, o in touched.items() if i in paid})}))
    for invoice_id, outcome in touched.items():
        if outcome["status"] in ("paid", "written_off") and outcome["settled_date"]:
            messages.append(("ledger.invoice_settled", {
                **base, "invoice_id": invoice_id, "settled_date": outcome["settled_date"],
                "status": outcome["status"], "open_amount": outcome["open_amount"],
                "effective_date": outcome["settled_date"],
            }))
    cash = _unapplied_change(kind, event) if kind != "ProfileUpdated" else None
    if cash is not None:
        messages.append(("ledger.unapplied_cash_changed", {
            **base, "currency": cash[0], "change": str(cash[1]),
            "effective_date": _effective_date(event), "cause": kind,
        }))
    prefix = f"{originator_id}:{originator_version}"
    timestamp = format_time(event["timestamp"])
    return [
        Outbound(TOPIC, customer_id, encode_event(
            event_id=f"ledger:{prefix}:{index}", source=SOURCE, event_type=event_type,
            subject=customer_id, data=data, time=timestamp,
        ))
        for index, (event_type, data) in enumerate(messages)
    ]


def unapplied_change(event: Any) -> tuple[str, Decimal] | None:
    """(currency, signed change) of the customer's unapplied cash caused by an event."""
    return _unapplied_change(type(event).__name__, vars(event))


def _unapplied_change(kind: str, event: dict[str, Any]) -> tuple[str, Decimal] | None:
    applied = sum((Decimal(a["amount"]) for a in event.get("applications", ())), ZERO)
    released = sum((Decimal(r["amount"]) for r in event.get("releases", ())), ZERO)
    delta = released - applied
    currency = event.get("currency")  # a reversal names its payment's (an event stored before: None)
    credit = event.get("credit")
    if credit:
        delta += Decimal(credit["amount"])
        currency = credit["currency"]
    if kind == "PaymentReversed":
        delta -= Decimal(event["forfeited"])
    if kind == "PaymentRefunded":
        delta -= Decimal(event["amount"])
    if delta == ZERO:
        return None
    touched = event.get("touched")
    if currency is None:
        currency = next(iter(touched.values()))["currency"] if touched else None
    return (currency or "", delta)


def _effective_date(event: dict[str, Any]) -> str:
    for name in ("effective_date", "resolved_date"):
        if name in event:
            return str(event[name])
    if event.get("credit"):
        return str(event["credit"]["date"])
    return str(event["invoice"]["issue_date"])
