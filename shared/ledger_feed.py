"""What the services downstream of the ledger (dunning, credit) consume: ``ar.ledger.events``
facts and ``ar.customers`` profiles (and, for dunning, credit's risk grades from
``ar.credit.events``; for credit, the outside ratings of ``ar.ratings``).

``decode_record`` turns a Kafka record into a ``Fact`` or raises ``InvalidMessage`` (the
reason names the field) for the dead-letter topic. Ledger facts are checked for the fields
the accounts read (ids, ISO dates, decimal-string money, the touched invoices' outcomes) and
passed on as they came, JSON-native. ``customer.upserted`` is validated with the ERP schema
(a bad ``credit_limit`` is named there) and normalised as the ledger stores a profile, plus
the message's origin (the same profile may come on both topics). ``ledger.*`` types this
version does not know are skipped, not dead-lettered: the ledger may add types (the contract
allows it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from shared.dates import BusinessDate
from shared.erp_events import (
    MAX_MESSAGE_BYTES,
    TOPIC_TYPES,
    CustomerUpserted,
    InvalidMessage,
    Origin,
    RatingReported,
    describe_error,
    parse_envelope,
)
from shared.money import check_minor_digits
from shared.values import Currency, FactAmount, Grade, Id


def _check_digits(model: BaseModel, *names: str) -> None:
    currency = getattr(model, "currency", None) or (model.model_extra or {}).get("currency")
    if isinstance(currency, str):
        for name in names:
            try:
                check_minor_digits(getattr(model, name), currency)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")

    customer_id: Id


class Outcome(BaseModel):
    """An invoice as a ledger event leaves it: its open amount, status and settled date."""

    model_config = ConfigDict(extra="allow")

    invoice_id: Id
    open_amount: FactAmount
    status: str | None = None
    settled_date: BusinessDate | None = None

    @model_validator(mode="after")
    def _digits(self) -> Outcome:
        _check_digits(self, "open_amount")
        return self

    def as_change(self) -> dict[str, Any]:
        """JSON-native, as the services' events record it."""
        return {"invoice_id": self.invoice_id, "open_amount": str(self.open_amount),
                "status": self.status or "open",
                "settled_date": self.settled_date.isoformat() if self.settled_date else None}


class InvoicesTouched(_Data):
    """``ledger.invoice_changed``, ``ledger.payment_applied`` (and any other fact touching invoices)."""

    invoices: list[Outcome] = Field(default_factory=list)


class InvoiceOpened(InvoicesTouched):
    invoice_id: Id
    currency: Currency
    amount: FactAmount
    issue_date: BusinessDate
    due_date: BusinessDate
    attributes: dict[str, Any] | None = None
    reference: str | None = None

    @model_validator(mode="after")
    def _digits(self) -> InvoiceOpened:
        _check_digits(self, "amount")
        return self


class InvoiceSettled(_Data):
    invoice_id: Id
    open_amount: FactAmount
    status: str
    settled_date: BusinessDate | None = None

    @property
    def invoices(self) -> list[Outcome]:
        """The settled invoice as an outcome (checked already)."""
        return [Outcome.model_construct(invoice_id=self.invoice_id, open_amount=self.open_amount,
                                        status=self.status, settled_date=self.settled_date)]


class InvoiceDisputed(_Data):
    dispute_id: Id
    invoice_id: Id
    amount: FactAmount


class DisputeClosed(InvoicesTouched):
    dispute_id: Id
    invoice_id: Id
    outcome: str | None = None


class UnappliedCashChanged(_Data):
    currency: Currency
    change: FactAmount  # signed

    @model_validator(mode="after")
    def _digits(self) -> UnappliedCashChanged:
        _check_digits(self, "change")
        return self


class PrepaymentAsked(_Data):
    """``ledger.prepayment_requested``: money asked before an order ships (no receivable)."""

    request_id: Id
    currency: Currency
    amount: FactAmount
    order_id: Id | None = None
    due_date: BusinessDate

    @model_validator(mode="after")
    def _digits(self) -> PrepaymentAsked:
        _check_digits(self, "amount")
        return self


class PrepaymentPaid(_Data):
    """``ledger.prepayment_received``: a payment for a request arrived."""

    request_id: Id
    payment_id: Id
    currency: Currency
    amount: FactAmount

    @model_validator(mode="after")
    def _digits(self) -> PrepaymentPaid:
        _check_digits(self, "amount")
        return self


class RefundTaken(BaseModel):
    credit: str
    amount: FactAmount


class RefundIssued(_Data):
    """``ledger.refund_issued``: money paid back out of unapplied cash (a deposit paid may so go
    back to the customer)."""

    refund_id: Id
    taken: list[RefundTaken] = Field(default_factory=list)


class PrepaymentWithdrawn(InvoicesTouched):
    """``ledger.prepayment_cancelled``: the request withdrawn (and what its cash then paid)."""

    request_id: Id


class CustomerUpdated(CustomerUpserted):
    """The profile the ledger keeps, with the ERP's bounds (depth, lengths, the credit limit)."""


class RiskGraded(_Data):
    """``credit.risk_grade_changed`` on ``ar.credit.events``: credit graded the customer anew
    (dunning's assignment rules match on the grade)."""

    grade: Grade | None = None  # None: not rated


CREDIT_TYPES: dict[str, type[RiskGraded]] = {"credit.risk_grade_changed": RiskGraded}


class CommitmentBroken(_Data):
    """``dunning.resumed`` (a promise ended, kept or broken) and ``dunning.plan_broken`` on
    ``ar.dunning.actions``: credit's early warnings count the broken ones."""

    promise_id: Id | None = None
    plan_id: Id | None = None
    reason: str | None = None
    status: str | None = None
    paused_until: BusinessDate | None = None
    closed_on: BusinessDate | None = None

    @property
    def broken(self) -> tuple[str, str, date] | None:
        """(``promise`` or ``plan``, its id, the day it was broken), or None: nothing broken. A
        promise is broken the day after its grace (``paused_until``); a plan on its closing day."""
        if self.reason == "promise_broken" and self.promise_id and self.paused_until:
            return "promise", self.promise_id, self.paused_until + timedelta(days=1)
        if self.plan_id and self.status == "broken" and self.closed_on:
            return "plan", self.plan_id, self.closed_on
        return None


DUNNING_TYPES: dict[str, type[CommitmentBroken]] = {
    "dunning.resumed": CommitmentBroken, "dunning.plan_broken": CommitmentBroken}


LedgerFact = (InvoiceOpened | InvoicesTouched | InvoiceSettled | InvoiceDisputed | DisputeClosed
              | UnappliedCashChanged | CustomerUpserted | RiskGraded | PrepaymentAsked | PrepaymentPaid
              | RatingReported | CommitmentBroken | RefundIssued)

LEDGER_TYPES: dict[str, type[LedgerFact]] = {
    "ledger.invoice_opened": InvoiceOpened,
    "ledger.invoice_changed": InvoicesTouched,
    "ledger.payment_applied": InvoicesTouched,
    "ledger.invoice_settled": InvoiceSettled,
    "ledger.invoice_disputed": InvoiceDisputed,
    "ledger.dispute_closed": DisputeClosed,
    "ledger.unapplied_cash_changed": UnappliedCashChanged,
    "ledger.customer_updated": CustomerUpdated,
    # (their invoices' outcomes, as any other fact's that touches invoices)
    "ledger.prepayment_applied": InvoicesTouched,
    "ledger.prepayment_cancelled": PrepaymentWithdrawn,
    # (no open items: credit asks for the deposit of an order while one is awaited)
    "ledger.prepayment_requested": PrepaymentAsked,
    "ledger.prepayment_received": PrepaymentPaid,
    "ledger.refund_issued": RefundIssued,
}


# the publishers whose facts are followed (a type of theirs this version does not read is skipped)
_FOLLOWED = ("ledger.", "credit.", "dunning.")
# what comes from outside the platform: the ERP's profiles, the agencies' ratings
_OUTSIDE = frozenset({"customer.upserted", "rating.reported"})


def ledger_sequence(event_id: str | None, service: str = "ledger") -> tuple[int, int] | None:
    """The (account version, index) a ledger event id ``ledger:<account>:<version>:<index>`` names
    (``service``: another publisher's ids of that shape, ``credit:...``).

    A customer's ledger events come in this order, so a fact at or below the last one an
    account recorded is a redelivery.
    """
    if not event_id or not event_id.startswith(f"{service}:"):
        return None
    parts = event_id.split(":")
    try:
        return int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Fact:
    """One consumed message for one customer's account.

    ``body`` is the typed fact (a profile from either topic is a ``CustomerUpserted``); None
    for a ledger type this version does not read (no effect). ``data`` is the message's data,
    JSON-native (a profile's normalised, with its ``origin``).
    """

    customer_id: str
    event_type: str
    data: dict[str, Any]
    event_id: str
    origin: Origin
    body: LedgerFact | None = None
    sequence: tuple[int, int] | None = None  # the ledger's order of the customer's events

    @property
    def known(self) -> bool:
        return self.body is not None

    @property
    def effective_date(self) -> str | None:
        """The business date the fact takes effect (``effective_date``, else ``settled_date``)."""
        return str(self.data.get("effective_date") or self.data.get("settled_date") or "") or None


def decode(raw: bytes | None, *, topic: str | None = None, partition: int | None = None,
           offset: int | None = None, key: bytes | None = None, reads: Collection[str] | None = None) -> Fact:
    """Decode and check one message; raises ``InvalidMessage`` naming the field.

    ``key`` None: none to check; ``b""``: a Kafka message without one (refused). ``reads``:
    the ledger types the consuming service reads (None: all); the others are skipped unread,
    as a type this version does not know is.
    """
    if raw is None:
        raise InvalidMessage("not JSON: the message has no value")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"not JSON: {error}") from None
    envelope = parse_envelope(payload)
    if topic == "ar.ledger.events" and not envelope.type.startswith("ledger."):
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic} (it takes ledger.*)")
    if topic == "ar.credit.events" and not envelope.type.startswith("credit."):
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic} (it takes credit.*)")
    if topic == "ar.dunning.actions" and not envelope.type.startswith("dunning."):
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic} (it takes dunning.*)")
    if topic in TOPIC_TYPES and envelope.type not in TOPIC_TYPES[topic]:
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic}")
    if envelope.type == "customer.upserted" and len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message: {len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} accepted")
    if envelope.type not in _OUTSIDE and not envelope.type.startswith(_FOLLOWED):
        raise InvalidMessage(f"type: unknown event type {envelope.type!r}")
    fact = read_fact(envelope.type, envelope.data, envelope.id, source=envelope.source,
                     subject=envelope.subject, topic=topic, partition=partition, offset=offset,
                     skip=reads is not None and envelope.type not in reads)
    customer_id = fact.customer_id
    if envelope.subject is not None and envelope.subject != customer_id:
        raise InvalidMessage(f"subject: {envelope.subject!r} differs from data.customer_id {customer_id!r}")
    if key == b"":
        raise InvalidMessage("key: the message has no key; it must be the customer id (the subject)")
    if key is not None and key.decode("utf-8", "replace") != customer_id:
        raise InvalidMessage(f"key: message key {key[:200]!r} differs from data.customer_id {customer_id!r}")
    return fact


def read_fact(event_type: str, data: dict[str, Any], event_id: str, *, source: str = "receivables/ledger",
              subject: str | None = None, topic: str | None = None, partition: int | None = None,
              offset: int | None = None, skip: bool = False) -> Fact:
    """The typed fact of one message's ``data``; raises ``InvalidMessage`` naming the field.

    ``skip``: a ledger type the service does not read: its data is not looked at (no body).
    """
    body: LedgerFact | None
    sequence = ledger_sequence(event_id)
    if skip and event_type.startswith(_FOLLOWED):
        body, customer_id = None, str(data.get("customer_id") or subject or "")
    elif event_type == "customer.upserted":
        try:
            body = CustomerUpserted.model_validate(data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        data = {**body.model_dump(mode="json"),
                "origin": {"source": source, "id": event_id, "type": event_type}}
        customer_id = body.customer_id
    elif event_type == "rating.reported":
        try:
            rating = RatingReported.model_validate(data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        data = {**rating.model_dump(mode="json"),
                "origin": {"source": source, "id": event_id, "type": event_type}}
        body, customer_id, sequence = rating, rating.customer_id, None
    elif event_type in LEDGER_TYPES:
        try:
            typed = LEDGER_TYPES[event_type].model_validate(data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        body, customer_id = typed, typed.customer_id
    elif event_type in CREDIT_TYPES:
        try:
            graded = CREDIT_TYPES[event_type].model_validate(data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        # (credit's order, not the ledger's: the account keeps it apart, ``credit_sequence``)
        body, customer_id, sequence = graded, graded.customer_id, None
    elif event_type in DUNNING_TYPES:
        try:
            body = DUNNING_TYPES[event_type].model_validate(data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        customer_id, sequence = body.customer_id, None  # (dunning's order: commitments are keyed by id)
    elif event_type.startswith(_FOLLOWED):  # a type added since: skipped, not refused
        body, customer_id = None, str(data.get("customer_id") or subject or "")
    else:
        raise InvalidMessage(f"type: unknown event type {event_type!r}")
    origin = Origin(source, event_id, event_type, topic, partition, offset, customer_id)
    return Fact(customer_id, event_type, data, event_id, origin, body, sequence)


class Record(Protocol):
    """What ``decode_record`` reads of a Kafka record (aiokafka's ``ConsumerRecord``): the facts
    stay free of the client, so that the domains can take them."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def decode_record(record: Record, reads: Collection[str] | None = None) -> Fact:
    return decode(record.value, topic=record.topic, partition=record.partition, offset=record.offset,
                  key=record.key or b"", reads=reads)
