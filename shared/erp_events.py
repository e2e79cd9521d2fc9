"""The ERP's inbound events (contract: ar.invoices, ar.payments, ar.disputes, ar.customers).

``decode_message`` turns raw bytes into a validated ``InboundMessage`` or raises
``InvalidMessage`` whose reason names the offending field; invalid messages go to the
dead-letter topic with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.envelope import CloudEvent
from shared.money import ZERO, check_minor_digits, parse_amount

Amount = Annotated[Decimal, BeforeValidator(parse_amount)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class InvalidMessage(ValueError):
    """A message that cannot be processed; ``reason`` says why, naming the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    customer_id: Id

    # the money fields of each event type, found once per class (not per message)
    _amount_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._amount_fields = tuple(
            name for name, field in cls.model_fields.items()
            if Amount in get_args(field.annotation)  # Amount | None
            or any(isinstance(meta, BeforeValidator) and meta.func is parse_amount
                   for meta in field.metadata)
        )

    @model_validator(mode="after")
    def _amounts_are_not_negative(self) -> _Data:
        currency = self.__dict__.get("currency")
        for name in self._amount_fields:
            value = self.__dict__[name]
            if value is None:
                continue
            if value < ZERO:
                raise ValueError(f"{name} must not be negative, got {value}")
            if currency is not None:
                try:
                    check_minor_digits(value, currency)
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from None
        return self


class Terms(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    net_days: int | None = Field(default=None, ge=0)
    discount_percent: Amount | None = None
    discount_days: int | None = Field(default=None, ge=0)

    @field_validator("discount_percent")
    @classmethod
    def _percent_in_range(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not ZERO <= value < 100:
            raise ValueError("must be between 0 and 100")
        return value


class InvoiceIssued(_Data):
    invoice_id: Id
    issue_date: date
    due_date: date
    currency: Currency
    amount: Amount
    terms: Terms | None = None
    reference: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive_and_due_after_issue(self) -> InvoiceIssued:
        if self.amount <= ZERO:
            raise ValueError("amount must be positive")
        if self.due_date < self.issue_date:
            raise ValueError("due_date must not be before issue_date")
        return self


class InvoiceAdjusted(_Data):
    invoice_id: Id
    new_amount: Amount
    effective_date: date
    reason: str


class InvoiceCancelled(_Data):
    invoice_id: Id
    effective_date: date
    reason: str


class InvoiceWrittenOff(_Data):
    invoice_id: Id
    amount: Amount
    effective_date: date
    reason: str


class CreditNoteIssued(_Data):
    credit_note_id: Id
    currency: Currency
    amount: Amount
    issue_date: date
    invoice_id: Id | None = None
    reason: str | None = None


class Allocation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_id: Id
    amount: Amount


class PaymentReceived(_Data):
    payment_id: Id
    currency: Currency
    amount: Amount
    received_date: date
    allocations: list[Allocation] = Field(default_factory=list)
    method: str | None = None
    reference: str | None = None

    @model_validator(mode="after")
    def _allocations_fit(self) -> PaymentReceived:
        if self.amount <= ZERO:
            raise ValueError("amount must be positive")
        allocated = ZERO
        for index, allocation in enumerate(self.allocations):
            if allocation.amount < ZERO:
                raise ValueError(f"allocations[{index}].amount must not be negative")
            try:
                check_minor_digits(allocation.amount, self.currency)
            except ValueError as error:
                raise ValueError(f"allocations[{index}].amount: {error}") from None
            allocated += allocation.amount
        if allocated > self.amount:
            raise ValueError(f"allocations total {allocated} exceeds amount {self.amount}")
        return self


class PaymentReversed(_Data):
    payment_id: Id
    effective_date: date
    reason: str


class DisputeOpened(_Data):
    dispute_id: Id
    invoice_id: Id
    amount: Amount
    opened_date: date
    reason: str


class DisputeResolved(_Data):
    dispute_id: Id
    invoice_id: Id
    resolved_date: date
    outcome: Literal["accepted", "rejected"]
    credited_amount: Amount | None = None

    @model_validator(mode="after")
    def _credit_only_when_accepted(self) -> DisputeResolved:
        if self.credited_amount is not None and self.outcome != "accepted":
            raise ValueError("credited_amount is only allowed with outcome 'accepted'")
        return self


class CreditLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Currency
    amount: Amount


class CustomerUpserted(_Data):
    name: str
    country: str | None = None
    segment: str | None = None
    payment_terms_days: int | None = Field(default=None, ge=0)
    credit_limit: CreditLimit | None = None
    dunning_policy: str | None = None
    contacts: list[Any] | dict[str, Any] | None = None
    do_not_dun: bool = False


EVENT_TYPES: dict[str, type[_Data]] = {
    "invoice.issued": InvoiceIssued,
    "invoice.adjusted": InvoiceAdjusted,
    "invoice.cancelled": InvoiceCancelled,
    "invoice.written_off": InvoiceWrittenOff,
    "credit_note.issued": CreditNoteIssued,
    "payment.received": PaymentReceived,
    "payment.reversed": PaymentReversed,
    "dispute.opened": DisputeOpened,
    "dispute.resolved": DisputeResolved,
    "customer.upserted": CustomerUpserted,
}

InboundData = (
    InvoiceIssued | InvoiceAdjusted | InvoiceCancelled | InvoiceWrittenOff | CreditNoteIssued
    | PaymentReceived | PaymentReversed | DisputeOpened | DisputeResolved | CustomerUpserted
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: the audit trail shows it next to every event it caused."""

    source: str
    id: str
    type: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    subject: str | None = None  # the customer id

    @property
    def dedupe_key(self) -> str:
        return f"{self.source}\x1f{self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "id": self.id, "type": self.type,
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "subject": self.subject,
        }


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A validated inbound event: what it says (``data``) and where it came from."""

    customer_id: str
    data: InboundData
    origin: Origin


def _describe(error: ValidationError, prefix: str) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def parse_envelope(payload: Any) -> CloudEvent:
    """Validate a decoded JSON value as a CloudEvent envelope."""
    if not isinstance(payload, dict):
        raise InvalidMessage("not a CloudEvent: the message must be a JSON object")
    try:
        return CloudEvent.model_validate(payload)
    except ValidationError as error:
        raise InvalidMessage(f"not a CloudEvent: {_describe(error, '')}") from None


def validate_event(
    envelope: CloudEvent,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> InboundMessage:
    """Validate an envelope's ``data`` against its ``type`` and check subject and key."""
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise InvalidMessage(f"type: unknown event type {envelope.type!r}")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as error:
        raise InvalidMessage(_describe(error, "data")) from None
    if envelope.subject is not None and envelope.subject != data.customer_id:
        raise InvalidMessage(
            f"subject: {envelope.subject!r} differs from data.customer_id {data.customer_id!r}"
        )
    if key is not None and key.decode("utf-8", "replace") != data.customer_id:
        raise InvalidMessage(
            f"key: message key {key!r} differs from data.customer_id {data.customer_id!r}"
        )
    origin = Origin(
        envelope.source, envelope.id, envelope.type, topic, partition, offset, data.customer_id
    )
    return InboundMessage(data.customer_id, data, origin)  # type: ignore[arg-type]


def decode_message(
    raw: bytes | None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> InboundMessage:
    """Decode and validate one Kafka message value; raises ``InvalidMessage``."""
    if raw is None:
        raise InvalidMessage("not JSON: the message has no value")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"not JSON: {error}") from None
    envelope = parse_envelope(payload)
    return validate_event(envelope, topic=topic, partition=partition, offset=offset, key=key)
