"""What the services downstream of the ledger (dunning, credit) consume: ``ar.ledger.events``
facts and ``ar.customers`` profiles.

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

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import orjson
from aiokafka.structs import ConsumerRecord
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from shared.dates import BusinessDate
from shared.erp_events import (
    MAX_MESSAGE_BYTES,
    TOPIC_TYPES,
    Currency,
    CustomerUpserted,
    Id,
    InvalidMessage,
    Origin,
    describe_error,
    parse_envelope,
)
from shared.money import check_amount_range, check_minor_digits, parse_amount


def _in_range(amount: Decimal) -> Decimal:
    check_amount_range(amount)  # no amount the ledger takes in, nor any it derives, goes beyond
    return amount


# Facts are held to the ledger's own bounds, so that a message on ar.ledger.events that no
# ledger would publish is refused here rather than stop a projection behind it.
Amount = Annotated[Decimal, BeforeValidator(parse_amount), AfterValidator(_in_range)]


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


class _Outcome(BaseModel):
    model_config = ConfigDict(extra="allow")

    invoice_id: Id
    open_amount: Amount
    status: str | None = None
    settled_date: BusinessDate | None = None

    @model_validator(mode="after")
    def _digits(self) -> _Outcome:
        _check_digits(self, "open_amount")
        return self


class _Touching(_Data):
    invoices: list[_Outcome] = Field(default_factory=list)


class _InvoiceOpened(_Touching):
    invoice_id: Id
    currency: Currency
    amount: Amount
    issue_date: BusinessDate
    due_date: BusinessDate
    attributes: dict[str, Any] | None = None
    reference: str | None = None

    @model_validator(mode="after")
    def _digits(self) -> _InvoiceOpened:
        _check_digits(self, "amount")
        return self


class _InvoiceSettled(_Data):
    invoice_id: Id
    open_amount: Amount
    status: str
    settled_date: BusinessDate | None = None


class _InvoiceDisputed(_Data):
    dispute_id: Id
    invoice_id: Id
    amount: Amount


class _DisputeClosed(_Touching):
    dispute_id: Id
    invoice_id: Id
    outcome: str | None = None


class _UnappliedCashChanged(_Data):
    currency: Currency
    change: Amount  # signed

    @model_validator(mode="after")
    def _digits(self) -> _UnappliedCashChanged:
        _check_digits(self, "change")
        return self


class _CustomerUpdated(CustomerUpserted):
    """The profile the ledger keeps, with the ERP's bounds (depth, lengths, the credit limit)."""


LEDGER_TYPES: dict[str, type[_Data] | type[CustomerUpserted]] = {
    "ledger.invoice_opened": _InvoiceOpened,
    "ledger.invoice_changed": _Touching,
    "ledger.payment_applied": _Touching,
    "ledger.invoice_settled": _InvoiceSettled,
    "ledger.invoice_disputed": _InvoiceDisputed,
    "ledger.dispute_closed": _DisputeClosed,
    "ledger.unapplied_cash_changed": _UnappliedCashChanged,
    "ledger.customer_updated": _CustomerUpdated,
}


@dataclass(frozen=True, slots=True)
class Fact:
    """One consumed message for one customer's account (``data`` JSON-native)."""

    customer_id: str
    event_type: str
    data: dict[str, Any]
    event_id: str
    origin: Origin
    known: bool = True  # False: a ledger type this version does not read (no effect)


def decode(raw: bytes | None, *, topic: str | None = None, partition: int | None = None,
           offset: int | None = None, key: bytes | None = None) -> Fact:
    """Decode and check one message; raises ``InvalidMessage`` naming the field.

    ``key`` None: none to check; ``b""``: a Kafka message without one (refused).
    """
    if raw is None:
        raise InvalidMessage("not JSON: the message has no value")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"not JSON: {error}") from None
    envelope = parse_envelope(payload)
    data: dict[str, Any] = envelope.data
    known = True
    if topic == "ar.ledger.events" and not envelope.type.startswith("ledger."):
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic} (it takes ledger.*)")
    if topic in TOPIC_TYPES and envelope.type not in TOPIC_TYPES[topic]:
        raise InvalidMessage(f"type: {envelope.type!r} is not carried on {topic}")
    if envelope.type == "customer.upserted":
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message: {len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} accepted")
        try:
            profile = CustomerUpserted.model_validate(envelope.data)
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
        data = {**profile.model_dump(mode="json"),
                "origin": {"source": envelope.source, "id": envelope.id, "type": envelope.type}}
        customer_id = profile.customer_id
    elif envelope.type in LEDGER_TYPES:
        try:
            customer_id = LEDGER_TYPES[envelope.type].model_validate(envelope.data).customer_id
        except ValidationError as error:
            raise InvalidMessage(describe_error(error, "data")) from None
    elif envelope.type.startswith("ledger."):
        customer_id, known = str(envelope.data.get("customer_id") or envelope.subject or ""), False
    else:
        raise InvalidMessage(f"type: unknown event type {envelope.type!r}")
    if envelope.subject is not None and envelope.subject != customer_id:
        raise InvalidMessage(f"subject: {envelope.subject!r} differs from data.customer_id {customer_id!r}")
    if key == b"":
        raise InvalidMessage("key: the message has no key; it must be the customer id (the subject)")
    if key is not None and key.decode("utf-8", "replace") != customer_id:
        raise InvalidMessage(f"key: message key {key[:200]!r} differs from data.customer_id {customer_id!r}")
    origin = Origin(envelope.source, envelope.id, envelope.type, topic, partition, offset, customer_id)
    return Fact(customer_id, envelope.type, data, envelope.id, origin, known)


def decode_record(record: ConsumerRecord[bytes, bytes]) -> Fact:
    return decode(record.value, topic=record.topic, partition=record.partition, offset=record.offset,
                  key=record.key or b"")
