"""The ERP's inbound events (contract: ar.invoices, ar.payments, ar.disputes, ar.customers; and
the outside ratings on ar.ratings, which credit reads, not the ledger).

``decode_message`` turns raw bytes into a validated ``InboundMessage`` or raises
``InvalidMessage`` whose reason names the offending field; invalid messages go to the
dead-letter topic with that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.dates import BusinessDate
from shared.envelope import CloudEvent
from shared.money import MAX_AMOUNT, ZERO, check_amount_range, check_minor_digits, parse_amount
from shared.values import NO_NUL, Currency, Id, InboundAmount, Name, Text

# The bounds of what a message may carry: beyond them it is dead-lettered, naming the field,
# so that nothing past the edge (date arithmetic, read-model columns, the producer's size
# limit, the event store's JSON encoder) can fail on it.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32  # orjson reads 1,024 levels but writes only 254: the store could not hold more
MAX_DAYS = 3650  # net and discount days, payment terms
MAX_ALLOCATIONS = 1000
MAX_ATTRIBUTES = 100

# The types each ERP topic carries (contract: inbound topics); other topics (tests) take any.
TOPIC_TYPES: dict[str, frozenset[str]] = {
    "ar.invoices": frozenset({"invoice.issued", "invoice.adjusted", "invoice.cancelled",
                              "invoice.written_off", "credit_note.issued", "prepayment.requested",
                              "prepayment.cancelled"}),
    "ar.payments": frozenset({"payment.received", "payment.reversed", "payment.refunded"}),
    "ar.disputes": frozenset({"dispute.opened", "dispute.resolved"}),
    "ar.customers": frozenset({"customer.upserted"}),
    "ar.ratings": frozenset({"rating.reported"}),  # (credit's, not the ledger's)
}
LEDGER_TOPICS = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers")

Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]
Attributes = Annotated[
    dict[Annotated[str, Field(max_length=100, pattern=NO_NUL)],
         Annotated[str, Field(max_length=1000, pattern=NO_NUL)]],
    Field(max_length=MAX_ATTRIBUTES),
]


@dataclass(frozen=True, slots=True)
class Limits:
    """The business's own bounds, from its settings (``RECEIVABLES_MAX_AMOUNT``)."""

    max_amount: Decimal = MAX_AMOUNT


DEFAULT_LIMITS = Limits()


def _too_deep(value: Any, levels: int) -> bool:
    """Whether a decoded JSON value nests arrays and objects more than ``levels`` deep."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > levels:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def _check_free_form(name: str, value: Any) -> None:
    """Refuse free-form content nested deeper than ``MAX_JSON_DEPTH``: it is stored as it came,
    and the store's JSON encoder could not write it. Only such content (fields a model does
    not name, contacts) is walked; named fields have shapes of their own."""
    if isinstance(value, dict | list) and _too_deep(value, MAX_JSON_DEPTH):
        raise ValueError(f"{name}: nested more than {MAX_JSON_DEPTH} levels deep")


def _check_amount(name: str, value: Decimal, currency: str | None, info: ValidationInfo) -> None:
    """The rules every money field keeps: not negative, in range, the currency's digits."""
    if value < ZERO:
        raise ValueError(f"{name}: must not be negative, got {value}")
    limits = info.context if isinstance(info.context, Limits) else DEFAULT_LIMITS
    try:
        check_amount_range(value, limits.max_amount)
        if currency is not None:
            check_minor_digits(value, currency)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


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
            if InboundAmount in get_args(field.annotation)  # InboundAmount | None
            or any(isinstance(meta, BeforeValidator) and meta.func is parse_amount
                   for meta in field.metadata)
        )

    @model_validator(mode="after")
    def _amounts_in_bounds(self, info: ValidationInfo) -> _Data:
        for name, value in (self.__pydantic_extra__ or {}).items():
            _check_free_form(name, value)
        currency = self.__dict__.get("currency")
        for name in self._amount_fields:
            value = self.__dict__[name]
            if value is not None:
                _check_amount(name, value, currency, info)
        return self


class Terms(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    net_days: Days | None = None
    discount_percent: InboundAmount | None = None
    discount_days: Days | None = None

    @field_validator("discount_percent")
    @classmethod
    def _percent_in_range(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not ZERO <= value < 100:
            raise ValueError("must be between 0 and 100")
        return value

    @model_validator(mode="after")
    def _extras_not_too_deep(self) -> Terms:
        for name, value in (self.__pydantic_extra__ or {}).items():
            _check_free_form(name, value)
        return self


class InvoiceIssued(_Data):
    invoice_id: Id
    issue_date: BusinessDate
    due_date: BusinessDate
    currency: Currency
    amount: InboundAmount
    terms: Terms | None = None
    reference: Text | None = None
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive_and_due_after_issue(self) -> InvoiceIssued:
        if self.amount <= ZERO:
            raise ValueError("amount: must be positive")
        if self.due_date < self.issue_date:
            raise ValueError("due_date: must not be before issue_date")
        return self


class InvoiceAdjusted(_Data):
    invoice_id: Id
    new_amount: InboundAmount
    effective_date: BusinessDate
    reason: Text


class InvoiceCancelled(_Data):
    invoice_id: Id
    effective_date: BusinessDate
    reason: Text


class InvoiceWrittenOff(_Data):
    invoice_id: Id
    amount: InboundAmount
    effective_date: BusinessDate
    reason: Text


class CreditNoteIssued(_Data):
    credit_note_id: Id
    currency: Currency
    amount: InboundAmount
    issue_date: BusinessDate
    invoice_id: Id | None = None
    reason: Text | None = None


class Allocation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_id: Id
    amount: InboundAmount


class PaymentReceived(_Data):
    payment_id: Id
    currency: Currency
    amount: InboundAmount
    received_date: BusinessDate
    allocations: list[Allocation] = Field(default_factory=list, max_length=MAX_ALLOCATIONS)
    method: Name | None = None
    reference: Text | None = None
    prepayment_request_id: Id | None = None

    @model_validator(mode="after")
    def _allocations_fit(self, info: ValidationInfo) -> PaymentReceived:
        if self.amount <= ZERO:
            raise ValueError("amount: must be positive")
        allocated = ZERO
        for index, allocation in enumerate(self.allocations):
            _check_amount(f"allocations[{index}].amount", allocation.amount, self.currency, info)
            allocated += allocation.amount
        if allocated > self.amount:
            raise ValueError(f"allocations: their total {allocated} exceeds amount {self.amount}")
        return self


class PaymentReversed(_Data):
    payment_id: Id
    effective_date: BusinessDate
    reason: Text


class PrepaymentRequested(_Data):
    """An advance receipt asked of the customer (a deposit, a prepayment before delivery): no
    receivable, but the payment tagged with it waits for the order's invoice."""

    request_id: Id
    currency: Currency
    amount: InboundAmount
    requested_date: BusinessDate
    due_date: BusinessDate
    order_id: Id | None = None

    @model_validator(mode="after")
    def _positive(self) -> PrepaymentRequested:
        if self.amount <= ZERO:
            raise ValueError("amount: must be positive")
        return self


class PrepaymentCancelled(_Data):
    request_id: Id
    effective_date: BusinessDate
    reason: Text


class PaymentRefunded(_Data):
    """Money paid back to the customer out of its unapplied cash (that payment's, if named)."""

    refund_id: Id
    currency: Currency
    amount: InboundAmount
    refund_date: BusinessDate
    payment_id: Id | None = None

    @model_validator(mode="after")
    def _positive(self) -> PaymentRefunded:
        if self.amount <= ZERO:
            raise ValueError("amount: must be positive")
        return self


class DisputeOpened(_Data):
    dispute_id: Id
    invoice_id: Id
    amount: InboundAmount
    opened_date: BusinessDate
    reason: Text


class DisputeResolved(_Data):
    dispute_id: Id
    invoice_id: Id
    resolved_date: BusinessDate
    outcome: Literal["accepted", "rejected"]
    credited_amount: InboundAmount | None = None

    @model_validator(mode="after")
    def _credit_only_when_accepted(self) -> DisputeResolved:
        if self.credited_amount is not None and self.outcome != "accepted":
            raise ValueError("credited_amount: only allowed with outcome 'accepted'")
        return self


class CreditLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Currency
    amount: InboundAmount

    @model_validator(mode="after")
    def _amount_in_bounds(self, info: ValidationInfo) -> CreditLimit:
        _check_amount("amount", self.amount, self.currency, info)
        return self


class CustomerUpserted(_Data):
    name: Name
    country: Name | None = None
    segment: Name | None = None
    payment_terms_days: Days | None = None
    credit_limit: CreditLimit | None = None
    dunning_policy: Name | None = None
    contacts: Annotated[list[Any], Field(max_length=100)] | dict[str, Any] | None = None
    do_not_dun: bool = False

    @model_validator(mode="after")
    def _contacts_not_too_deep(self) -> CustomerUpserted:
        _check_free_form("contacts", self.contacts)
        return self


def _probability(value: Decimal) -> Decimal:
    if not ZERO <= value <= 1:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return value


def _bounded_score(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # (parse_amount refuses what is not finite)
    if value.adjusted() >= 12 or exponent < -6:  # (no arithmetic: 1E+999999 would overflow it)
        raise ValueError(f"must be below 10^12 with at most 6 decimal places, got {value}")
    return value


# a provider's score: a decimal string, never a number, of a size arithmetic on it stays exact
Score = Annotated[Decimal, BeforeValidator(parse_amount), AfterValidator(_bounded_score)]
Probability = Annotated[Decimal, BeforeValidator(parse_amount), AfterValidator(_probability)]
ProviderGrade = Annotated[str, Field(min_length=1, max_length=50, pattern=NO_NUL)]


class RatingFields(BaseModel):
    """A rating's figures, as ``rating.reported`` and ``POST /customers/{id}/ratings`` take them."""

    provider: Id
    score: Score
    grade: ProviderGrade
    probability_of_default: Probability | None = None
    report_date: BusinessDate
    valid_until: BusinessDate | None = None

    @model_validator(mode="after")
    def _valid_after_report(self) -> RatingFields:
        if self.valid_until is not None and self.valid_until < self.report_date:
            raise ValueError(f"valid_until: {self.valid_until} is before report_date {self.report_date}")
        return self


class RatingReported(RatingFields, _Data):
    """``rating.reported`` on ``ar.ratings``: an agency's or bureau's rating of the customer
    (for credit, not the ledger)."""


EVENT_TYPES: dict[str, type[_Data]] = {
    "invoice.issued": InvoiceIssued,
    "invoice.adjusted": InvoiceAdjusted,
    "invoice.cancelled": InvoiceCancelled,
    "invoice.written_off": InvoiceWrittenOff,
    "credit_note.issued": CreditNoteIssued,
    "prepayment.requested": PrepaymentRequested,
    "prepayment.cancelled": PrepaymentCancelled,
    "payment.received": PaymentReceived,
    "payment.reversed": PaymentReversed,
    "payment.refunded": PaymentRefunded,
    "dispute.opened": DisputeOpened,
    "dispute.resolved": DisputeResolved,
    "customer.upserted": CustomerUpserted,
    "rating.reported": RatingReported,
}

InboundData = (
    InvoiceIssued | InvoiceAdjusted | InvoiceCancelled | InvoiceWrittenOff | CreditNoteIssued
    | PrepaymentRequested | PrepaymentCancelled | PaymentReceived | PaymentReversed | PaymentRefunded
    | DisputeOpened | DisputeResolved
    | CustomerUpserted
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


# A model's own rules name their field first ("amount: must be positive"): the reason puts it
# on the field's path, as pydantic does for a field's rules.
_FIELD_FIRST = re.compile(r"([A-Za-z_][\w.\[\]]*): (.+)", re.S)


def describe_error(error: ValidationError, prefix: str) -> str:
    """A validation error as a reason naming each field by its path (``data.allocations[0].amount: …``)."""
    parts = []
    for item in error.errors():
        path = [str(part) for part in (prefix, *item["loc"]) if part != ""]
        message = item["msg"].removeprefix("Value error, ")
        named = _FIELD_FIRST.fullmatch(message) if item["type"] == "value_error" else None
        if named is not None:
            path.append(named.group(1))
            message = named.group(2)
        location = ".".join(path)
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def parse_envelope(payload: Any) -> CloudEvent:
    """Validate a decoded JSON value as a CloudEvent envelope."""
    if not isinstance(payload, dict):
        raise InvalidMessage("not a CloudEvent: the message must be a JSON object")
    try:
        return CloudEvent.model_validate(payload)
    except ValidationError as error:
        raise InvalidMessage(f"not a CloudEvent: {describe_error(error, '')}") from None


def validate_event(
    envelope: CloudEvent,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> InboundMessage:
    """Validate an envelope's ``data`` against its ``type`` and its topic, check subject and key.

    ``key`` is None where there is none to check (REST); ``b""`` is a Kafka message without one.
    """
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise InvalidMessage(f"type: unknown event type {envelope.type!r}")
    if envelope.type in TOPIC_TYPES["ar.ratings"]:
        raise InvalidMessage(f"type: {envelope.type!r} is for credit (ar.ratings, or its POST "
                             f"/customers/{{id}}/ratings), not the ledger")
    allowed = TOPIC_TYPES.get(topic) if topic is not None else None
    if allowed is not None and envelope.type not in allowed:
        raise InvalidMessage(
            f"type: {envelope.type!r} is not carried on {topic} (it takes {', '.join(sorted(allowed))})"
        )
    try:
        data = model.model_validate(envelope.data, context=limits)
    except ValidationError as error:
        raise InvalidMessage(describe_error(error, "data")) from None
    if envelope.subject is not None and envelope.subject != data.customer_id:
        raise InvalidMessage(
            f"subject: {envelope.subject!r} differs from data.customer_id {data.customer_id!r}"
        )
    if key == b"":
        raise InvalidMessage("key: the message has no key; it must be the customer id (the subject)")
    if key is not None and key.decode("utf-8", "replace") != data.customer_id:
        raise InvalidMessage(
            f"key: message key {key[:200]!r} differs from data.customer_id {data.customer_id!r}"
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
    limits: Limits = DEFAULT_LIMITS,
) -> InboundMessage:
    """Decode and validate one Kafka message (its value and key); raises ``InvalidMessage``.

    The key is required: it is what puts all of a customer's messages on one partition.
    """
    if raw is None:
        raise InvalidMessage("not JSON: the message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message: {len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} accepted")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"not JSON: {error}") from None
    envelope = parse_envelope(payload)
    return validate_event(envelope, topic=topic, partition=partition, offset=offset, key=key or b"",
                          limits=limits)
