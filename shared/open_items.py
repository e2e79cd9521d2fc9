"""A customer's open items as the ledger's facts leave them: the one mirror dunning and credit keep.

Dunning and credit follow ``ar.ledger.events`` (``shared.ledger_feed``) to know each
customer's invoices, their open amounts, the disputes on them and the unapplied cash. Both
keep that knowledge in an ``OpenItems`` inside their account aggregate, and both take a fact
in the same two steps, so that rebuilding an aggregate from its events rebuilds the mirror
without deciding anything again:

- ``change(fact)`` decides what a fact would record: a ``MirrorChange`` whose ``kind`` names
  the event and whose ``payload`` is the event's JSON-native arguments, or None when the fact
  tells nothing new (a redelivery, an invoice or dispute already known, amounts unchanged);
- the aggregate records that event, and the event applies it with one call here
  (``open_invoice``, ``change_open_amounts``, ``open_dispute``, ``close_dispute``,
  ``change_unapplied``), which also advances ``sequence``.

``take`` is how an aggregate's ``observe`` begins: a redelivery is dropped, a profile goes
to the aggregate, a change is recorded by it.

Pure: no I/O, no clock. Here too is the rule every service uses for a disputed amount
(``disputed_part``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from shared.erp_events import CustomerUpserted
from shared.ledger_feed import (
    DisputeClosed,
    Fact,
    InvoiceDisputed,
    InvoiceOpened,
    InvoiceSettled,
    InvoicesTouched,
    UnappliedCashChanged,
)
from shared.money import ZERO

ChangeKind = Literal["invoice_opened", "open_amounts_changed", "dispute_opened", "dispute_closed",
                     "unapplied_cash_changed"]


def disputed_part(disputed: Decimal, open_amount: Decimal) -> Decimal:
    """What of an invoice is contested and still open: never more than its open amount, never
    below zero (a dispute outlives the payments that settle what it contests)."""
    return max(ZERO, min(disputed, open_amount))


@dataclass(slots=True)
class OpenItem:
    """An invoice as the ledger's facts show it."""

    invoice_id: str
    currency: str
    amount: Decimal
    issue_date: date
    due_date: date
    open_amount: Decimal  # zero once cancelled
    status: str
    settled_date: date | None = None
    # False: recorded by an event without a settled date (dunning's before it kept one), so
    # a fact naming one is no news unless its open amount or status is
    settled_known: bool = True
    attributes: dict[str, Any] | None = None  # the ERP's, as the invoice was opened with them

    @property
    def is_open(self) -> bool:
        return self.open_amount > ZERO


@dataclass(frozen=True, slots=True)
class MirrorChange:
    """What a fact changes: the event to record (``kind``) and its arguments, JSON-native."""

    kind: ChangeKind
    payload: dict[str, Any]


class OpenItems:
    """One customer's invoices, disputes and unapplied cash, and how far the ledger's feed got."""

    __slots__ = (
        "dispute_invoice",
        "disputes",
        "invoices",
        "open_ids",
        "receivables",
        "sequence",
        "unapplied",
    )

    def __init__(self) -> None:
        self.invoices: dict[str, OpenItem] = {}
        self.open_ids: set[str] = set()  # invoices with an open amount
        self.disputes: dict[str, dict[str, Decimal]] = {}  # invoice id -> open dispute id -> amount
        self.dispute_invoice: dict[str, str] = {}  # every dispute seen -> its invoice
        self.receivables: dict[str, Decimal] = {}  # open amounts per currency, disputed included
        self.unapplied: dict[str, Decimal] = {}
        self.sequence: list[int] | None = None  # the last ledger (version, index) recorded

    # ----------------------------------------------------------------- reading

    def disputed_amount(self, invoice: OpenItem) -> Decimal:
        disputed = sum(self.disputes.get(invoice.invoice_id, {}).values(), ZERO)
        return disputed_part(disputed, invoice.open_amount)

    def undisputed_amount(self, invoice: OpenItem) -> Decimal:
        """The open amount less what is disputed: what a notice may ask for."""
        return invoice.open_amount - self.disputed_amount(invoice)

    def open_items(self) -> list[OpenItem]:
        return [self.invoices[i] for i in self.open_ids]

    def is_disputed(self, dispute_id: str) -> bool:
        return dispute_id in self.disputes.get(self.dispute_invoice.get(dispute_id, ""), {})

    # ----------------------------------------------------------------- deciding

    def is_redelivery(self, fact: Fact) -> bool:
        """A ledger fact at or below the last one recorded (the ledger's order per customer)."""
        seen = self.sequence
        return fact.sequence is not None and seen is not None and list(fact.sequence) <= seen

    def take(self, fact: Fact, profile: Callable[[Fact, list[int] | None], bool],
             record: Callable[[Fact, MirrorChange, list[int] | None], bool]) -> bool:
        """Take one fact into the aggregate: False when it was seen before or tells nothing new.

        A customer profile (``customer.upserted``, or the ledger's ``ledger.customer_updated``)
        goes to ``profile(fact, sequence)``; what a fact changes of the open items to
        ``record(fact, change, sequence)``, which records the event (or not: False).
        """
        if self.is_redelivery(fact):
            return False
        sequence = list(fact.sequence) if fact.sequence is not None else None
        if isinstance(fact.body, CustomerUpserted):
            return profile(fact, sequence)
        change = self.change(fact)
        return change is not None and record(fact, change, sequence)

    def change(self, fact: Fact) -> MirrorChange | None:
        """What ``fact`` would record, or None when it tells nothing new (profiles are not open items)."""
        body = fact.body
        if isinstance(body, InvoiceOpened) and body.invoice_id not in self.invoices:
            own = next((o for o in body.invoices if o.invoice_id == body.invoice_id), None)
            invoice = {"invoice_id": body.invoice_id, "currency": body.currency, "amount": str(body.amount),
                       "issue_date": body.issue_date.isoformat(), "due_date": body.due_date.isoformat(),
                       **({"attributes": body.attributes} if body.attributes else {}),
                       **({"open_amount": str(body.amount), "status": "open", "settled_date": None}
                          if own is None else own.as_change())}
            others = self._changes(o.as_change() for o in body.invoices if o.invoice_id != body.invoice_id)
            return MirrorChange("invoice_opened", {"invoice": invoice, "outcomes": others})
        if isinstance(body, InvoiceDisputed):
            if body.dispute_id in self.dispute_invoice:
                return None
            return MirrorChange("dispute_opened", {
                "dispute_id": body.dispute_id, "invoice_id": body.invoice_id, "amount": str(body.amount)})
        if isinstance(body, DisputeClosed) and self.is_disputed(body.dispute_id):
            return MirrorChange("dispute_closed", {
                "dispute_id": body.dispute_id, "outcome": str(body.outcome),
                "effective_date": fact.effective_date,
                "outcomes": self._changes(o.as_change() for o in body.invoices)})
        if isinstance(body, UnappliedCashChanged):
            if not body.change:
                return None
            return MirrorChange("unapplied_cash_changed",
                                {"currency": body.currency, "change": str(body.change)})
        if isinstance(body, InvoicesTouched | InvoiceSettled):  # an invoice or dispute known already included
            outcomes = self._changes(o.as_change() for o in body.invoices)
            if outcomes:
                return MirrorChange("open_amounts_changed",
                                    {"outcomes": outcomes, "effective_date": fact.effective_date})
        return None

    def _changes(self, outcomes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The outcomes that change a known invoice's open amount, status or settled date."""
        changes = []
        for outcome in outcomes:
            invoice = self.invoices.get(outcome["invoice_id"])
            if invoice is None:
                continue
            settled = invoice.settled_date.isoformat() if invoice.settled_date else None
            if (invoice.open_amount != _open_amount(outcome) or invoice.status != outcome["status"]
                    or (invoice.settled_known and settled != outcome.get("settled_date"))):
                changes.append(outcome)
        return changes

    # ----------------------------------------------------------------- applying (from events)

    def advance(self, sequence: Sequence[int] | None) -> None:
        if sequence is not None:
            self.sequence = list(sequence)

    def open_invoice(self, invoice: Mapping[str, Any], outcomes: Iterable[Mapping[str, Any]],
                     sequence: Sequence[int] | None = None) -> OpenItem:
        self.advance(sequence)
        new = OpenItem(
            invoice_id=invoice["invoice_id"], currency=invoice["currency"], amount=Decimal(invoice["amount"]),
            issue_date=date.fromisoformat(invoice["issue_date"]),
            due_date=date.fromisoformat(invoice["due_date"]), open_amount=ZERO, status="open",
            attributes=invoice.get("attributes"))
        self.invoices[new.invoice_id] = new
        self.change_open_amounts([invoice, *outcomes])
        return new

    def change_open_amounts(self, outcomes: Iterable[Mapping[str, Any]],
                            sequence: Sequence[int] | None = None) -> None:
        self.advance(sequence)
        for outcome in outcomes:
            invoice = self.invoices[outcome["invoice_id"]]
            open_amount = _open_amount(outcome)
            self.receivables[invoice.currency] = (
                self.receivables.get(invoice.currency, ZERO) + open_amount - invoice.open_amount)
            invoice.open_amount = open_amount
            invoice.status = outcome["status"]
            settled = outcome.get("settled_date")
            invoice.settled_date = date.fromisoformat(settled) if settled else None
            invoice.settled_known = "settled_date" in outcome
            if open_amount > ZERO:
                self.open_ids.add(invoice.invoice_id)
            else:
                self.open_ids.discard(invoice.invoice_id)

    def open_dispute(self, dispute_id: str, invoice_id: str, amount: str,
                     sequence: Sequence[int] | None = None) -> None:
        self.advance(sequence)
        self.dispute_invoice[dispute_id] = invoice_id
        self.disputes.setdefault(invoice_id, {})[dispute_id] = Decimal(amount)

    def close_dispute(self, dispute_id: str, outcomes: Iterable[Mapping[str, Any]],
                      sequence: Sequence[int] | None = None) -> None:
        self.advance(sequence)
        invoice_id = self.dispute_invoice.get(dispute_id, "")
        disputes = self.disputes.get(invoice_id)
        if disputes is not None:
            disputes.pop(dispute_id, None)
            if not disputes:
                del self.disputes[invoice_id]
        self.change_open_amounts(outcomes)

    def change_unapplied(self, currency: str, change: str, sequence: Sequence[int] | None = None) -> None:
        self.advance(sequence)
        self.unapplied[currency] = self.unapplied.get(currency, ZERO) + Decimal(change)


def _open_amount(outcome: Mapping[str, Any]) -> Decimal:
    """A cancelled invoice owes nothing, whatever amount the fact still names."""
    return ZERO if outcome["status"] == "cancelled" else Decimal(outcome["open_amount"])
