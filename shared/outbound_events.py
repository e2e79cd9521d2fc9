"""The ``data`` of every event the platform publishes, as pydantic models (contract: outbound topics).

One model per outbound event type, exactly what the translators produce:

- ``ar.ledger.events`` (``services/ledger/outbound.py``): ``ledger.*``;
- ``ar.dunning.actions`` (``services/dunning/outbound.py``): ``dunning.*``;
- ``ar.credit.events`` (``services/credit/outbound.py``, ``services/credit/domain/publication.py``):
  ``credit.*``;
- ``ar.deadletter`` (``shared/consumer.py``, every service's consumer): ``deadletter.rejected``.

Money travels as decimal strings (``"1250.00"``), dates as ISO ``YYYY-MM-DD`` strings, and
nothing else: the models keep the JSON-native values as they are (``str``, not ``Decimal`` or
``date``), so validating a published ``data`` checks its exact shape. A field typed
``X | None`` without a default is always present and may be null; a field with a default may
be left out. Every model forbids fields it does not name, except where the translators pass
on content of the ERP's that the contract leaves open (a customer profile's further fields,
an invoice's payment terms). ``docs/asyncapi.yaml`` is generated from these models
(``python -m shared.asyncapi``).

An outbound message too large to publish whole goes out with ``data`` cut to its short
scalar fields (``shared.outbox.trimmed``): ``TruncatedData`` describes that.

This module imports nothing from ``services``: the services' consumers may validate with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

# ------------------------------------------------------------------------- field types

# The contract's decimal string of money: no exponent, no spaces (``"-12.50"`` where signed).
MONEY_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
SIGNED_MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# A decimal number's text as Python writes it (scores, ratios: an exponent may appear).
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?(E[+-]?[0-9]+)?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

Money = Annotated[str, Field(pattern=MONEY_PATTERN, examples=["1250.00"],
                             description="A money amount: a decimal string, never a JSON number.")]
SignedMoney = Annotated[str, Field(pattern=SIGNED_MONEY_PATTERN, examples=["-250.00"],
                                   description="A signed money amount: a decimal string.")]
DecimalText = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["42.5"],
                                   description="A decimal number as a string.")]
IsoDate = Annotated[str, Field(pattern=DATE_PATTERN, json_schema_extra={"format": "date"},
                               examples=["2024-01-31"], description="An ISO 8601 date (YYYY-MM-DD).")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"],
                                description="An ISO 4217 currency code.")]
Id = Annotated[str, Field(min_length=1, description="A business id, as the ERP gave it.")]
CustomerId = Annotated[str, Field(
    min_length=1, description="The customer's id: also the message's key and the envelope's subject.")]
InvoiceStatus = Literal["open", "partially_paid", "paid", "cancelled", "written_off"]
HoldReason = Literal["limit_exceeded", "overdue_days", "risk_grade", "manual"]
Grade = Literal["A", "B", "C", "D", "E"]
Channel = Literal["email", "sms", "letter", "phone_task", "visit_task"]


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------- ar.ledger.events


class Origin(_Exact):
    """The ERP message the ledger event answers (its idempotency key and type)."""

    source: str = Field(description="The ERP message's CloudEvents `source`.")
    id: str = Field(description="The ERP message's CloudEvents `id`.")
    type: str = Field(description="The ERP message's type, e.g. `payment.received`.")


class InvoiceOutcome(_Exact):
    """An invoice the event touched, as it stands after it."""

    invoice_id: Id
    currency: Currency
    open_amount: Money = Field(description="The invoice's open amount after the event.")
    settled_date: IsoDate | None = Field(
        description="The effective date its open amount reached zero; null while open or cancelled.")
    status: InvoiceStatus


class Application(_Exact):
    """An amount of a credit (payment, credit note, dispute credit) applied to an invoice."""

    credit: str = Field(description="The credit's key: `payment:<id>`, `credit_note:<id>` or "
                                    "`dispute:<id>`.", examples=["payment:PAY-1"])
    invoice_id: Id
    amount: Money = Field(description="The cash applied.")
    discount: Money = Field(description="The cash discount taken with it (`0` when none).")
    effective_date: IsoDate


class _LedgerData(_Exact):
    customer_id: CustomerId
    origin: Origin


class InvoiceTerms(BaseModel):
    """The invoice's payment terms as the ERP gave them (further fields passed on as they came)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    net_days: int | None = Field(ge=0, description="Days from issue to due.")
    discount_percent: DecimalText | None = Field(description="Cash discount, percent of the amount.")
    discount_days: int | None = Field(ge=0, description="Days from issue within which the discount holds.")


class InvoiceOpened(_LedgerData):
    """`ledger.invoice_opened`: an invoice was issued; it may be paid at once by unapplied credits."""

    invoice_id: Id
    currency: Currency
    amount: Money
    issue_date: IsoDate
    due_date: IsoDate
    terms: InvoiceTerms | None
    reference: str | None
    attributes: dict[str, str] = Field(description="The ERP's attributes of the invoice.")
    effective_date: IsoDate = Field(description="The issue date.")
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched (this one first).")
    applied: list[Application] = Field(description="Credits applied to it on arrival.")


class _InvoiceChange(_LedgerData):
    effective_date: IsoDate
    reason: str
    released: list[Application] = Field(description="Applications undone by the change.")
    applied: list[Application] = Field(description="Applications the released cash made.")
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched.")


class InvoiceAdjustment(_InvoiceChange):
    """An invoice's amount changed (applications beyond the new amount are released)."""

    change: Literal["adjusted"]
    invoice_id: Id
    new_amount: Money


class InvoiceCancellation(_InvoiceChange):
    """An invoice was cancelled (every application on it is released)."""

    change: Literal["cancelled"]
    invoice_id: Id


class InvoiceWriteOff(_InvoiceChange):
    """Part or all of an invoice's open amount was written off (nothing is released or applied)."""

    change: Literal["written_off"]
    invoice_id: Id
    amount: Money = Field(description="The amount written off.")


class PaymentReversal(_InvoiceChange):
    """A payment was reversed: its applications are released, its unapplied rest is gone."""

    change: Literal["payment_reversed"]
    payment_id: Id


class InvoiceChanged(RootModel[Annotated[
    InvoiceAdjustment | InvoiceCancellation | InvoiceWriteOff | PaymentReversal,
    Field(discriminator="change"),
]]):
    """`ledger.invoice_changed`: an invoice adjusted, cancelled or written off, or a payment
    reversed (`change` tells which)."""


class _CreditApplied(_LedgerData):
    credit: str = Field(description="The credit's key.", examples=["payment:PAY-1"])
    currency: Currency
    amount: Money = Field(description="The credit's whole amount.")
    effective_date: IsoDate = Field(description="The credit's date (received or issued).")
    applied: list[Application]
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched.")


class PaymentApplied(_CreditApplied):
    """A payment arrived."""

    credit_kind: Literal["payment"]
    payment_id: Id


class CreditApplied(_CreditApplied):
    """A credit note, or the credit of an accepted dispute, arrived."""

    credit_kind: Literal["credit_note", "dispute_credit"]
    credit_id: Id = Field(description="The credit note's id, or the dispute's id.")


class CreditReceived(RootModel[Annotated[
    PaymentApplied | CreditApplied, Field(discriminator="credit_kind"),
]]):
    """`ledger.payment_applied`: a payment, credit note or dispute credit arrived and was applied
    (what is not applied stays unapplied cash)."""


class InvoiceSettled(_LedgerData):
    """`ledger.invoice_settled`: an invoice's open amount reached zero (paid or written off)."""

    invoice_id: Id
    settled_date: IsoDate
    status: Literal["paid", "written_off"]
    open_amount: Money = Field(description="Zero.")
    effective_date: IsoDate = Field(description="The settled date.")


class InvoiceDisputed(_LedgerData):
    """`ledger.invoice_disputed`: a dispute was opened (its invoice may not have arrived yet)."""

    dispute_id: Id
    invoice_id: Id
    amount: Money = Field(description="The disputed amount.")
    opened_date: IsoDate
    reason: str
    effective_date: IsoDate = Field(description="The opened date.")


class DisputeClosed(_LedgerData):
    """`ledger.dispute_closed`: a dispute was resolved."""

    dispute_id: Id
    invoice_id: Id
    outcome: Literal["accepted", "rejected"]
    effective_date: IsoDate = Field(description="The resolved date.")
    credited_amount: Money | None = Field(
        description="The credit issued for an accepted dispute; null without one (and while the "
                    "invoice has not arrived: its credit comes as `ledger.payment_applied` then).")
    applied: list[Application]
    invoices: list[InvoiceOutcome]


class UnappliedCashChanged(_LedgerData):
    """`ledger.unapplied_cash_changed`: the customer's unapplied cash in a currency changed."""

    currency: Currency
    change: SignedMoney = Field(description="The signed change of the unapplied cash.")
    effective_date: IsoDate
    cause: Literal["InvoiceIssued", "InvoiceAdjusted", "InvoiceCancelled", "CreditReceived",
                   "PaymentReversed", "DisputeResolved"] = Field(
        description="The ledger's stored event that changed it.")


class ProfileCreditLimit(_Exact):
    currency: Currency
    amount: Money


class CustomerUpdated(BaseModel):
    """`ledger.customer_updated`: the customer's profile (from `customer.upserted`) changed.

    The profile as the ledger keeps it: every field of the ERP's, the further ones it may
    add passed on as they came."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customer_id: CustomerId
    origin: Origin
    name: str
    country: str | None
    segment: str | None
    payment_terms_days: int | None = Field(ge=0)
    credit_limit: ProfileCreditLimit | None
    dunning_policy: str | None = Field(description="The dunning policy's name; null: the default.")
    contacts: list[Any] | dict[str, Any] | None = Field(description="As the ERP gave them.")
    do_not_dun: bool


# ------------------------------------------------------------------------- ar.dunning.actions


class NoticeLine(_Exact):
    """An invoice on a notice."""

    invoice_id: Id
    open_amount: Money
    days_past_due: int
    due_date: IsoDate
    level: int = Field(ge=0, description="The invoice's own dunning level.")
    interest: Money = Field(description="Late interest on it to the notice's date.")


class NoticeIssued(_Exact):
    """`dunning.notice_issued`: a notice was issued (one per customer, run date and currency)."""

    notice_id: str = Field(description="A UUID derived from customer, date and currency.")
    customer_id: CustomerId
    as_of: IsoDate = Field(description="The run's date.")
    currency: Currency
    policy: str = Field(description="The dunning policy's name.")
    policy_version: int = Field(ge=1)
    level: int = Field(ge=0, description="The notice's level (of the policy's levels).")
    level_name: str
    channel: Channel = Field(description="The first of `channels`.")
    channels: list[Channel]
    template: str
    language: str
    invoices: list[NoticeLine]
    open_total: Money = Field(description="The open amount of the invoices on it.")
    fees: Money
    interest: Money
    total_due: Money = Field(description="What the notice asks for: open total, fees and interest.")
    respond_by: IsoDate
    escalate: bool = Field(description="The level hands invoices to collections.")
    escalated_invoices: list[Id] = Field(description="The invoices handed to collections by it.")
    text: str | None = Field(description="The rendered text; null when none was rendered.")


class Escalated(_Exact):
    """`dunning.escalated`: a notice handed invoices to collections."""

    customer_id: CustomerId
    notice_id: str
    as_of: IsoDate
    level: int = Field(ge=0)
    level_name: str
    currency: Currency
    invoices: list[NoticeLine] = Field(description="The invoices handed over.")
    handed_to: Literal["collections"]
    open_amount: Money = Field(description="Their open total.")


class _Promise(_Exact):
    customer_id: CustomerId
    promise_id: str
    currency: Currency
    amount: Money
    made_on: IsoDate
    promised_date: IsoDate
    paused_until: IsoDate = Field(description="The promised date plus the policy's grace.")
    invoice_ids: list[Id] = Field(description="The invoices it covers (paused).")


class Paused(_Promise):
    """`dunning.paused`: a promise to pay pauses dunning of the invoices it covers."""

    status: Literal["open"]


class Resumed(_Promise):
    """`dunning.resumed`: a promise ended; dunning of what is still open goes on."""

    status: Literal["kept", "broken"]
    reason: Literal["promise_kept", "promise_broken"]


# ------------------------------------------------------------------------- ar.credit.events


class Position(_Exact):
    """The customer's credit figures in one currency."""

    currency: Currency
    open_receivables: Money
    reserved: Money = Field(description="Approved orders not invoiced yet.")
    exposure: Money = Field(description="Open receivables plus reservations.")
    limit: Money | None
    available: SignedMoney | None = Field(description="Limit less exposure; null without a limit.")


class OverdueInvoice(_Exact):
    invoice_id: Id
    currency: Currency
    due_date: IsoDate
    days_past_due: int
    open_amount: Money


class HoldPlaced(_Exact):
    """`credit.hold_placed`: the customer was put on credit hold."""

    customer_id: CustomerId
    hold_id: str
    reasons: list[HoldReason]
    currency: Currency | None = Field(description="The currency behind the hold; null when none.")
    exposure: Money | None
    limit: Money | None
    positions: list[Position] = Field(description="Every currency with a limit or an exposure.")
    placed_by: str = Field(description="`auto`, or the user who placed it.")
    note: str | None
    overdue_invoices: list[OverdueInvoice]
    risk_grade: Grade | None
    effective_date: IsoDate | None = Field(description="The business date that triggered it, if any.")


class HoldReasonsChanged(_Exact):
    """`credit.hold_reasons_changed`: an active automatic hold's reasons changed."""

    customer_id: CustomerId
    hold_id: str
    previous_reasons: list[HoldReason]
    reasons: list[HoldReason]
    positions: list[Position]
    overdue_invoices: list[OverdueInvoice]
    risk_grade: Grade | None
    effective_date: IsoDate | None


class HoldReleased(_Exact):
    """`credit.hold_released`: a hold was released."""

    customer_id: CustomerId
    hold_id: str
    released_by: str = Field(description="`auto`, or the user who released it.")
    reason: str
    reasons: list[HoldReason] = Field(description="The hold's reasons.")
    positions: list[Position]
    effective_date: IsoDate | None


class LimitSet(_Exact):
    """A credit limit was set (by the ERP's profile or by a user)."""

    customer_id: CustomerId
    currency: Currency
    limit: Money
    previous_limit: Money | None
    changed_by: str = Field(description="The user, or `erp:<source>` (`erp`).")
    change: Literal["set"]
    expires_on: IsoDate | None
    review_on: IsoDate | None


class LimitExpired(_Exact):
    """A credit limit expired (the review after its last day)."""

    customer_id: CustomerId
    currency: Currency
    limit: None
    previous_limit: Money
    changed_by: Literal["auto"]
    change: Literal["expired"]
    expires_on: IsoDate
    review_on: None
    as_of: IsoDate = Field(description="The review's date.")


class LimitChanged(RootModel[Annotated[LimitSet | LimitExpired, Field(discriminator="change")]]):
    """`credit.limit_changed`: a credit limit was set or expired (`change`)."""


class LimitReviewDue(_Exact):
    """`credit.limit_review_due`: a credit limit reached its review date."""

    customer_id: CustomerId
    currency: Currency
    review_on: IsoDate
    as_of: IsoDate


class RiskFactor(_Exact):
    name: Literal["weighted_days_late", "late_share", "max_days_past_due", "dispute_rate", "trend"]
    value: DecimalText = Field(description="What was measured: days, a share or a rate.")
    intensity: DecimalText = Field(description="From 0 to 1.")
    weight: DecimalText = Field(description="The most points the factor adds.")
    contribution: DecimalText = Field(description="Weight times intensity: the points it adds.")
    detail: str


class RiskGradeChanged(_Exact):
    """`credit.risk_grade_changed`: a review graded the customer's risk differently."""

    customer_id: CustomerId
    grade: Grade | None = Field(description="Null: not rated.")
    previous_grade: Grade | None
    score: DecimalText = Field(description="The factors' contributions added up.")
    factors: list[RiskFactor]
    as_of: IsoDate


# ------------------------------------------------------------------------- ar.deadletter


class DeadLetter(_Exact):
    """`deadletter.rejected`: a consumed message a service could not apply, and why."""

    original: str = Field(description="The original message's value, base64 (cut to its first 64 KiB; "
                                      "empty when the broker refused even that).")
    original_size: int = Field(ge=0, description="The whole original's size in bytes.")
    original_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The whole original's SHA-256.")
    original_truncated: bool = Field(description="`original` holds less than the whole.")
    topic: str | None = Field(description="Where the original was consumed.")
    partition: int | None
    offset: int | None
    key: str | None = Field(description="The original's key (cut to 4,000 characters); null without one.")
    reason: str = Field(max_length=4000, description="Why, naming the field (`data.amount: ...`).")


# ------------------------------------------------------------------------- trimmed events


class EventStorePointer(_Exact):
    notification_id: int
    originator_id: str
    originator_version: int


class TruncatedData(BaseModel):
    """The `data` of an outbound event too large to publish whole (over 900 KiB): its short
    scalar fields (ids, amounts, dates) plus where the whole event is kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    truncated: Literal[True]
    original_size: int = Field(description="The whole message's size in bytes.")
    original_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    event_store: EventStorePointer


# ------------------------------------------------------------------------- the registry

LEDGER_EVENTS: dict[str, type[BaseModel]] = {
    "ledger.invoice_opened": InvoiceOpened,
    "ledger.invoice_changed": InvoiceChanged,
    "ledger.payment_applied": CreditReceived,
    "ledger.invoice_settled": InvoiceSettled,
    "ledger.invoice_disputed": InvoiceDisputed,
    "ledger.dispute_closed": DisputeClosed,
    "ledger.unapplied_cash_changed": UnappliedCashChanged,
    "ledger.customer_updated": CustomerUpdated,
}
DUNNING_EVENTS: dict[str, type[BaseModel]] = {
    "dunning.notice_issued": NoticeIssued,
    "dunning.escalated": Escalated,
    "dunning.paused": Paused,
    "dunning.resumed": Resumed,
}
CREDIT_EVENTS: dict[str, type[BaseModel]] = {
    "credit.hold_placed": HoldPlaced,
    "credit.hold_reasons_changed": HoldReasonsChanged,
    "credit.hold_released": HoldReleased,
    "credit.limit_changed": LimitChanged,
    "credit.limit_review_due": LimitReviewDue,
    "credit.risk_grade_changed": RiskGradeChanged,
}
DEADLETTER_EVENTS: dict[str, type[BaseModel]] = {"deadletter.rejected": DeadLetter}

# topic -> (the service that publishes it, its CloudEvents source, its types)
PUBLISHED: dict[str, tuple[str, str | None, dict[str, type[BaseModel]]]] = {
    "ar.ledger.events": ("ledger", "receivables/ledger", LEDGER_EVENTS),
    "ar.dunning.actions": ("dunning", "receivables/dunning", DUNNING_EVENTS),
    "ar.credit.events": ("credit", "receivables/credit", CREDIT_EVENTS),
    "ar.deadletter": ("ledger, dunning, credit", None, DEADLETTER_EVENTS),  # receivables/<service>
}
OUTBOUND_TYPES: dict[str, type[BaseModel]] = {
    event_type: model for _, _, types in PUBLISHED.values() for event_type, model in types.items()
}
