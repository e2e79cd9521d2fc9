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

from shared.values import (
    Channel,
    Grade,
    PublishedAmount,
    PublishedCurrency,
    PublishedCustomerId,
    PublishedDate,
    PublishedDecimal,
    PublishedId,
    PublishedSignedAmount,
)

# ------------------------------------------------------------------------- field types
# (the value types are shared.values'; these enumerations are the published contract's own)

InvoiceStatus = Literal["open", "partially_paid", "paid", "cancelled", "written_off"]
HoldReason = Literal["limit_exceeded", "overdue_days", "risk_grade", "early_warning", "manual"]


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

    invoice_id: PublishedId
    currency: PublishedCurrency
    open_amount: PublishedAmount = Field(description="The invoice's open amount after the event.")
    settled_date: PublishedDate | None = Field(
        description="The effective date its open amount reached zero; null while open or cancelled.")
    status: InvoiceStatus


class Application(_Exact):
    """An amount of a credit (payment, credit note, dispute credit) applied to an invoice."""

    credit: str = Field(description="The credit's key: `payment:<id>`, `credit_note:<id>` or "
                                    "`dispute:<id>`.", examples=["payment:PAY-1"])
    invoice_id: PublishedId
    amount: PublishedAmount = Field(description="The cash applied.")
    discount: PublishedAmount = Field(description="The cash discount taken with it (`0` when none).")
    effective_date: PublishedDate


class _LedgerData(_Exact):
    customer_id: PublishedCustomerId
    origin: Origin


class InvoiceTerms(BaseModel):
    """The invoice's payment terms as the ERP gave them (further fields passed on as they came)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    net_days: int | None = Field(ge=0, description="Days from issue to due.")
    discount_percent: PublishedDecimal | None = Field(description="Cash discount, percent of the amount.")
    discount_days: int | None = Field(ge=0, description="Days from issue within which the discount holds.")


class InvoiceOpened(_LedgerData):
    """`ledger.invoice_opened`: an invoice was issued; it may be paid at once by unapplied credits."""

    invoice_id: PublishedId
    currency: PublishedCurrency
    amount: PublishedAmount
    issue_date: PublishedDate
    due_date: PublishedDate
    terms: InvoiceTerms | None
    reference: str | None
    attributes: dict[str, str] = Field(description="The ERP's attributes of the invoice.")
    effective_date: PublishedDate = Field(description="The issue date.")
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched (this one first).")
    applied: list[Application] = Field(description="Credits applied to it on arrival.")


class _InvoiceChange(_LedgerData):
    effective_date: PublishedDate
    reason: str
    released: list[Application] = Field(description="Applications undone by the change.")
    applied: list[Application] = Field(description="Applications the released cash made.")
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched.")


class InvoiceAdjustment(_InvoiceChange):
    """An invoice's amount changed (applications beyond the new amount are released)."""

    change: Literal["adjusted"]
    invoice_id: PublishedId
    new_amount: PublishedAmount


class InvoiceCancellation(_InvoiceChange):
    """An invoice was cancelled (every application on it is released)."""

    change: Literal["cancelled"]
    invoice_id: PublishedId


class InvoiceWriteOff(_InvoiceChange):
    """Part or all of an invoice's open amount was written off (nothing is released or applied)."""

    change: Literal["written_off"]
    invoice_id: PublishedId
    amount: PublishedAmount = Field(description="The amount written off.")


class PaymentReversal(_InvoiceChange):
    """A payment was reversed: its applications are released, its unapplied rest is gone."""

    change: Literal["payment_reversed"]
    payment_id: PublishedId


class InvoiceChanged(RootModel[Annotated[
    InvoiceAdjustment | InvoiceCancellation | InvoiceWriteOff | PaymentReversal,
    Field(discriminator="change"),
]]):
    """`ledger.invoice_changed`: an invoice adjusted, cancelled or written off, or a payment
    reversed (`change` tells which)."""


class _CreditApplied(_LedgerData):
    credit: str = Field(description="The credit's key.", examples=["payment:PAY-1"])
    currency: PublishedCurrency
    amount: PublishedAmount = Field(description="The credit's whole amount.")
    effective_date: PublishedDate = Field(description="The credit's date (received or issued).")
    applied: list[Application]
    invoices: list[InvoiceOutcome] = Field(description="Every invoice the event touched.")


class PaymentApplied(_CreditApplied):
    """A payment arrived."""

    credit_kind: Literal["payment"]
    payment_id: PublishedId


class CreditApplied(_CreditApplied):
    """A credit note, or the credit of an accepted dispute, arrived."""

    credit_kind: Literal["credit_note", "dispute_credit"]
    credit_id: PublishedId = Field(description="The credit note's id, or the dispute's id.")


class CreditReceived(RootModel[Annotated[
    PaymentApplied | CreditApplied, Field(discriminator="credit_kind"),
]]):
    """`ledger.payment_applied`: a payment, credit note or dispute credit arrived and was applied
    (what is not applied stays unapplied cash)."""


class InvoiceSettled(_LedgerData):
    """`ledger.invoice_settled`: an invoice's open amount reached zero (paid or written off)."""

    invoice_id: PublishedId
    settled_date: PublishedDate
    status: Literal["paid", "written_off"]
    open_amount: PublishedAmount = Field(description="Zero.")
    effective_date: PublishedDate = Field(description="The settled date.")


class InvoiceDisputed(_LedgerData):
    """`ledger.invoice_disputed`: a dispute was opened (its invoice may not have arrived yet)."""

    dispute_id: PublishedId
    invoice_id: PublishedId
    amount: PublishedAmount = Field(description="The disputed amount.")
    opened_date: PublishedDate
    reason: str
    effective_date: PublishedDate = Field(description="The opened date.")


class DisputeClosed(_LedgerData):
    """`ledger.dispute_closed`: a dispute was resolved."""

    dispute_id: PublishedId
    invoice_id: PublishedId
    outcome: Literal["accepted", "rejected"]
    effective_date: PublishedDate = Field(description="The resolved date.")
    credited_amount: PublishedAmount | None = Field(
        description="The credit issued for an accepted dispute; null without one (and while the "
                    "invoice has not arrived: its credit comes as `ledger.payment_applied` then).")
    applied: list[Application]
    invoices: list[InvoiceOutcome]


class UnappliedCashChanged(_LedgerData):
    """`ledger.unapplied_cash_changed`: the customer's unapplied cash in a currency changed."""

    currency: PublishedCurrency
    change: PublishedSignedAmount = Field(description="The signed change of the unapplied cash.")
    effective_date: PublishedDate
    cause: Literal["InvoiceIssued", "InvoiceAdjusted", "InvoiceCancelled", "CreditReceived",
                   "PaymentReversed", "PaymentRefunded", "PrepaymentRequested", "PrepaymentCancelled",
                   "DisputeResolved"] = Field(
        description="The ledger's stored event that changed it.")


class PrepaymentAsked(_LedgerData):
    """`ledger.prepayment_requested`: money asked in advance (no receivable)."""

    request_id: PublishedId
    currency: PublishedCurrency
    amount: PublishedAmount
    requested_date: PublishedDate
    due_date: PublishedDate
    order_id: PublishedId | None
    effective_date: PublishedDate = Field(description="The requested date.")


class PrepaymentReceived(_LedgerData):
    """`ledger.prepayment_received`: a payment tagged with a request arrived (held for its order)."""

    request_id: PublishedId
    payment_id: PublishedId
    currency: PublishedCurrency
    amount: PublishedAmount
    effective_date: PublishedDate


class PrepaymentApplied(_LedgerData):
    """`ledger.prepayment_applied`: cash held for a request paid its order's invoice."""

    effective_date: PublishedDate = Field(description="The applications' date.")
    applied: list[Application]
    invoices: list[InvoiceOutcome]


class PrepaymentWithdrawn(_LedgerData):
    """`ledger.prepayment_cancelled`: a request withdrawn; its cash is ordinary unapplied cash."""

    request_id: PublishedId
    currency: PublishedCurrency
    effective_date: PublishedDate
    reason: str
    released: list[str] = Field(description="The credits no longer held for it.")
    applied: list[Application] = Field(description="What that cash then paid, oldest due first.")
    invoices: list[InvoiceOutcome]


class RefundTake(_Exact):
    credit: str = Field(description="The credit's key the money came out of.", examples=["payment:PAY-1"])
    amount: PublishedAmount


class RefundIssued(_LedgerData):
    """`ledger.refund_issued`: money paid back to the customer out of its unapplied cash."""

    refund_id: PublishedId
    currency: PublishedCurrency
    amount: PublishedAmount
    effective_date: PublishedDate = Field(description="The refund's date.")
    payment_id: PublishedId | None = Field(description="The payment it was asked of; null: the oldest cash.")
    taken: list[RefundTake] = Field(description="The credits it came out of, oldest first.")


class ProfileCreditLimit(_Exact):
    currency: PublishedCurrency
    amount: PublishedAmount


class CustomerUpdated(BaseModel):
    """`ledger.customer_updated`: the customer's profile (from `customer.upserted`) changed.

    The profile as the ledger keeps it: every field of the ERP's, the further ones it may
    add passed on as they came."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customer_id: PublishedCustomerId
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

    invoice_id: PublishedId
    open_amount: PublishedAmount
    days_past_due: int
    due_date: PublishedDate
    level: int = Field(ge=0, description="The invoice's own dunning level.")
    interest: PublishedAmount = Field(description="Late interest on it to the notice's date.")


class NoticeIssued(_Exact):
    """`dunning.notice_issued`: a notice was issued (one per customer, run date and currency)."""

    notice_id: str = Field(description="A UUID derived from customer, date and currency.")
    customer_id: PublishedCustomerId
    as_of: PublishedDate = Field(description="The run's date.")
    currency: PublishedCurrency
    policy: str = Field(description="The dunning policy's name.")
    policy_version: int = Field(ge=1)
    level: int = Field(ge=0, description="The notice's level (of the policy's levels).")
    level_name: str
    channel: Channel = Field(description="The first of `channels`.")
    channels: list[Channel]
    template: str
    language: str
    invoices: list[NoticeLine]
    open_total: PublishedAmount = Field(description="The open amount of the invoices on it.")
    fees: PublishedAmount
    interest: PublishedAmount
    total_due: PublishedAmount = Field(description="What the notice asks for: open total, fees and interest.")
    respond_by: PublishedDate
    escalate: bool = Field(description="The level hands invoices to collections.")
    escalated_invoices: list[PublishedId] = Field(description="The invoices handed to collections by it.")
    text: str | None = Field(description="The rendered text; null when none was rendered.")
    kind: Literal["dunning", "instalment_reminder"] = Field(
        default="dunning", description="A dunning notice, or the reminder of a payment plan's instalment.")
    plan_id: str | None = Field(default=None, description="The plan of an instalment reminder.")
    instalment: int | None = Field(default=None, ge=1, description="The instalment reminded of (1-based).")


class Escalated(_Exact):
    """`dunning.escalated`: a notice handed invoices to collections."""

    customer_id: PublishedCustomerId
    notice_id: str
    as_of: PublishedDate
    level: int = Field(ge=0)
    level_name: str
    currency: PublishedCurrency
    invoices: list[NoticeLine] = Field(description="The invoices handed over.")
    handed_to: Literal["collections"]
    open_amount: PublishedAmount = Field(description="Their open total.")


class _Promise(_Exact):
    customer_id: PublishedCustomerId
    promise_id: str
    currency: PublishedCurrency
    amount: PublishedAmount
    made_on: PublishedDate
    promised_date: PublishedDate
    paused_until: PublishedDate = Field(description="The promised date plus the policy's grace.")
    invoice_ids: list[PublishedId] = Field(description="The invoices it covers (paused).")


class Paused(_Promise):
    """`dunning.paused`: a promise to pay pauses dunning of the invoices it covers."""

    status: Literal["open"]


class Resumed(_Promise):
    """`dunning.resumed`: a promise ended; dunning of what is still open goes on."""

    status: Literal["kept", "broken"]
    reason: Literal["promise_kept", "promise_broken"]


class PlanInstalment(_Exact):
    due_date: PublishedDate
    amount: PublishedAmount
    unpaid: PublishedAmount = Field(description="What is still owed of it, payments counted in date order.")


class PaymentPlan(_Exact):
    """`dunning.plan_requested`, `.plan_agreed`, `.plan_rejected`, `.plan_broken`, `.plan_completed`,
    `.plan_cancelled`: a payment plan as the step left it."""

    plan_id: str
    customer_id: PublishedCustomerId
    currency: PublishedCurrency
    status: Literal["requested", "active", "completed", "broken", "rejected", "cancelled"]
    invoice_ids: list[PublishedId] = Field(description="The invoices it covers (not dunned while it stands).")
    instalments: list[PlanInstalment]
    total: PublishedAmount
    paid: PublishedAmount = Field(description="What the covered invoices' open amount fell by since.")
    requested_on: PublishedDate
    reason: str
    requested_by: str
    decided_on: PublishedDate | None
    decided_by: str | None
    rejection_reason: str | None
    closed_on: PublishedDate | None
    broken_instalment: int | None = Field(description="The instalment not paid in time (1-based).")


class StatementItem(_Exact):
    """An invoice open at the end of a statement's period."""

    invoice_id: PublishedId
    issue_date: PublishedDate
    due_date: PublishedDate
    amount: PublishedAmount
    open_amount: PublishedAmount
    days_past_due: int = Field(ge=0, description="At the end of the period.")


class StatementIssued(_Exact):
    """`dunning.statement_issued`: a statement of account sent (one per customer, currency and
    statement run)."""

    statement_id: str = Field(description="A UUID derived from customer, currency and run date.")
    customer_id: PublishedCustomerId
    as_of: PublishedDate = Field(description="The statement run's date.")
    currency: PublishedCurrency
    period_from: PublishedDate
    period_to: PublishedDate
    opening_balance: PublishedSignedAmount = Field(
        description="Open invoices less unapplied cash before the period.")
    closing_balance: PublishedSignedAmount = Field(description="The same at its end.")
    open_items: list[StatementItem]
    open_total: PublishedAmount
    unapplied_cash: PublishedAmount
    confirmation_requested: bool = Field(description="The customer is asked to confirm the balance.")
    language: str
    template: str
    text: str | None


class BalanceAnswered(_Exact):
    """`dunning.balance_confirmed`, `dunning.balance_disputed`: the customer's answer to a statement."""

    customer_id: PublishedCustomerId
    statement_id: str
    currency: PublishedCurrency
    response: Literal["confirmed", "disputed"]
    statement_balance: PublishedSignedAmount = Field(description="The statement's closing balance.")
    balance: PublishedSignedAmount = Field(description="The balance the customer sees.")
    difference: PublishedSignedAmount = Field(description="The customer's balance less the statement's.")
    note: str
    responded_on: PublishedDate


# ------------------------------------------------------------------------- ar.credit.events


class Position(_Exact):
    """The customer's credit figures in one currency."""

    currency: PublishedCurrency
    open_receivables: PublishedAmount
    reserved: PublishedAmount = Field(description="Approved orders not invoiced yet.")
    exposure: PublishedAmount = Field(description="Open receivables plus reservations.")
    limit: PublishedAmount | None
    available: PublishedSignedAmount | None = Field(description="Limit less exposure; null without a limit.")


class OverdueInvoice(_Exact):
    invoice_id: PublishedId
    currency: PublishedCurrency
    due_date: PublishedDate
    days_past_due: int
    open_amount: PublishedAmount


class HoldPlaced(_Exact):
    """`credit.hold_placed`: the customer was put on credit hold."""

    customer_id: PublishedCustomerId
    hold_id: str
    reasons: list[HoldReason]
    currency: PublishedCurrency | None = Field(description="The currency behind the hold; null when none.")
    exposure: PublishedAmount | None
    limit: PublishedAmount | None
    positions: list[Position] = Field(description="Every currency with a limit or an exposure.")
    placed_by: str = Field(description="`auto`, or the user who placed it.")
    note: str | None
    overdue_invoices: list[OverdueInvoice]
    risk_grade: Grade | None
    effective_date: PublishedDate | None = Field(description="The business date that triggered it, if any.")


class HoldReasonsChanged(_Exact):
    """`credit.hold_reasons_changed`: an active automatic hold's reasons changed."""

    customer_id: PublishedCustomerId
    hold_id: str
    previous_reasons: list[HoldReason]
    reasons: list[HoldReason]
    positions: list[Position]
    overdue_invoices: list[OverdueInvoice]
    risk_grade: Grade | None
    effective_date: PublishedDate | None


class HoldReleased(_Exact):
    """`credit.hold_released`: a hold was released."""

    customer_id: PublishedCustomerId
    hold_id: str
    released_by: str = Field(description="`auto`, or the user who released it.")
    reason: str
    reasons: list[HoldReason] = Field(description="The hold's reasons.")
    positions: list[Position]
    effective_date: PublishedDate | None


class LimitSet(_Exact):
    """A credit limit was set (by the ERP's profile or by a user)."""

    customer_id: PublishedCustomerId
    currency: PublishedCurrency
    limit: PublishedAmount
    previous_limit: PublishedAmount | None
    changed_by: str = Field(description="The user, or `erp:<source>` (`erp`).")
    change: Literal["set"]
    expires_on: PublishedDate | None
    review_on: PublishedDate | None


class LimitExpired(_Exact):
    """A credit limit expired (the review after its last day)."""

    customer_id: PublishedCustomerId
    currency: PublishedCurrency
    limit: None
    previous_limit: PublishedAmount
    changed_by: Literal["auto"]
    change: Literal["expired"]
    expires_on: PublishedDate
    review_on: None
    as_of: PublishedDate = Field(description="The review's date.")


class LimitChanged(RootModel[Annotated[LimitSet | LimitExpired, Field(discriminator="change")]]):
    """`credit.limit_changed`: a credit limit was set or expired (`change`)."""


class LimitReviewDue(_Exact):
    """`credit.limit_review_due`: a credit limit reached its review date."""

    customer_id: PublishedCustomerId
    currency: PublishedCurrency
    review_on: PublishedDate
    as_of: PublishedDate


class SecurityExpiring(_Exact):
    """`credit.security_expiring`: a security of the customer ends within 30 days."""

    customer_id: PublishedCustomerId
    security_id: PublishedId
    kind: str
    currency: PublishedCurrency | None
    amount: PublishedAmount | None = Field(description="What is left of it (its amount less draws).")
    valid_until: PublishedDate = Field(description="The last day it counts.")
    days_left: int
    as_of: PublishedDate = Field(description="The review's date.")


Signal = Literal["late_payments", "days_late_trend", "broken_promise", "rating_downgrade", "risk_grade_worse",
                 "limit_utilisation", "security_expiring"]


class WarningRaised(_Exact):
    """`credit.warning_raised`: an early-warning signal tripped for the customer."""

    warning_id: str
    customer_id: PublishedCustomerId
    signal: Signal
    severity: Literal["low", "medium", "high"]
    evidence: dict[str, Any] = Field(description="The figures that tripped it (invoices, ratings, amounts).")
    raised_on: PublishedDate
    hold: bool = Field(description="Whether its rule holds the customer (reason early_warning) while open.")


class WarningCleared(_Exact):
    """`credit.warning_cleared`: a review found the warning's condition gone."""

    warning_id: str
    customer_id: PublishedCustomerId
    signal: Signal
    cleared_on: PublishedDate


class WarningAcknowledged(_Exact):
    """`credit.warning_acknowledged`: a user acknowledged a warning with a note."""

    warning_id: str
    customer_id: PublishedCustomerId
    note: str
    by: str
    acknowledged_on: PublishedDate


class RiskFactor(_Exact):
    name: Literal["weighted_days_late", "late_share", "max_days_past_due", "dispute_rate", "trend",
                  "outside_rating"]
    value: PublishedDecimal = Field(description="What was measured: days, a share or a rate.")
    intensity: PublishedDecimal = Field(description="From 0 to 1.")
    weight: PublishedDecimal = Field(description="The most points the factor adds.")
    contribution: PublishedDecimal = Field(description="Weight times intensity: the points it adds.")
    detail: str


class RiskGradeChanged(_Exact):
    """`credit.risk_grade_changed`: a review graded the customer's risk differently."""

    customer_id: PublishedCustomerId
    grade: Grade | None = Field(description="Null: not rated.")
    previous_grade: Grade | None
    score: PublishedDecimal = Field(description="The factors' contributions added up.")
    factors: list[RiskFactor]
    as_of: PublishedDate


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
    "ledger.refund_issued": RefundIssued,
    "ledger.prepayment_requested": PrepaymentAsked,
    "ledger.prepayment_received": PrepaymentReceived,
    "ledger.prepayment_applied": PrepaymentApplied,
    "ledger.prepayment_cancelled": PrepaymentWithdrawn,
}
DUNNING_EVENTS: dict[str, type[BaseModel]] = {
    "dunning.notice_issued": NoticeIssued,
    "dunning.escalated": Escalated,
    "dunning.paused": Paused,
    "dunning.resumed": Resumed,
    "dunning.plan_requested": PaymentPlan,
    "dunning.plan_agreed": PaymentPlan,
    "dunning.plan_rejected": PaymentPlan,
    "dunning.plan_broken": PaymentPlan,
    "dunning.plan_completed": PaymentPlan,
    "dunning.plan_cancelled": PaymentPlan,
    "dunning.statement_issued": StatementIssued,
    "dunning.balance_confirmed": BalanceAnswered,
    "dunning.balance_disputed": BalanceAnswered,
}
CREDIT_EVENTS: dict[str, type[BaseModel]] = {
    "credit.hold_placed": HoldPlaced,
    "credit.hold_reasons_changed": HoldReasonsChanged,
    "credit.hold_released": HoldReleased,
    "credit.limit_changed": LimitChanged,
    "credit.limit_review_due": LimitReviewDue,
    "credit.risk_grade_changed": RiskGradeChanged,
    "credit.security_expiring": SecurityExpiring,
    "credit.warning_raised": WarningRaised,
    "credit.warning_cleared": WarningCleared,
    "credit.warning_acknowledged": WarningAcknowledged,
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
