"""The state of one customer's book and the rules that move money between its parts.

Pure data and arithmetic: no I/O, no clock. ``plan_applications`` decides which credit
(payment, credit note, dispute credit) pays which invoice; the account records those
decisions in its events, so replaying history never re-decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from operator import attrgetter

from services.ledger.domain.overlay import Overlay, SetOverlay
from shared.money import ZERO, quantize
from shared.open_items import disputed_part


@dataclass(slots=True)
class Invoice:
    invoice_id: str
    currency: str
    amount: Decimal
    issue_date: date
    due_date: date
    open_amount: Decimal
    discount_percent: Decimal | None = None
    discount_days: int | None = None
    reference: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    terms: dict[str, object] | None = None
    issued_as: dict[str, object] = field(default_factory=dict)  # the record it arrived as
    cancelled: bool = False
    written_off: Decimal = ZERO
    settled_date: date | None = None
    # credit key -> amount of that credit applied here (insertion order = application order)
    applied: dict[str, Decimal] = field(default_factory=dict)
    discounts: dict[str, Decimal] = field(default_factory=dict)
    applied_on: dict[str, date] = field(default_factory=dict)  # latest application date
    open_disputes: dict[str, Decimal] = field(default_factory=dict)
    # effective date -> net change of the open amount on that date (issue, applications,
    # releases, adjustments, write-offs): what the settled date is read from
    moves: dict[date, Decimal] = field(default_factory=dict)

    @property
    def discount_taken(self) -> Decimal:
        return sum(self.discounts.values(), ZERO)

    @property
    def disputed_amount(self) -> Decimal:
        """What is contested and still open: never more than the open amount (``disputed_part``)."""
        return disputed_part(sum(self.open_disputes.values(), ZERO), self.open_amount)

    @property
    def status(self) -> str:
        return invoice_status(self.cancelled, self.open_amount, self.amount, self.written_off)

    def max_discount(self, amount: Decimal | None = None) -> Decimal:
        """The cash discount on the invoice's amount (or on ``amount``, an adjusted one)."""
        if not self.discount_percent or self.discount_days is None:
            return ZERO
        base = self.amount if amount is None else amount
        return quantize(base * self.discount_percent / 100, self.currency)

    def discount_deadline(self) -> date | None:
        if not self.discount_percent or self.discount_days is None:
            return None
        return self.issue_date + timedelta(days=self.discount_days)


def settled_on(invoice: Invoice, changes: list[tuple[date, Decimal]]) -> date:
    """The effective date on which an invoice's open amount (now zero) reached zero.

    That is the last date on which the open amount changed, each movement counted at its
    own effective date: a credit dated earlier but booked later does not move the date back
    before a payment dated later that it completes.
    """
    net = dict(invoice.moves)
    for on, delta in changes:
        net[on] = net.get(on, ZERO) + delta
    return max((on for on, delta in net.items() if delta), default=invoice.issue_date)


def invoice_status(cancelled: bool, open_amount: Decimal, amount: Decimal, written_off: Decimal) -> str:
    """The contract's status: open, partially_paid, paid, cancelled or written_off."""
    if cancelled:
        return "cancelled"
    if open_amount == ZERO:
        return "written_off" if written_off > ZERO else "paid"
    if open_amount < amount:
        return "partially_paid"
    return "open"


@dataclass(slots=True)
class Credit:
    """Money on the customer's side: a payment, a credit note or a dispute credit."""

    key: str  # "payment:P1", "credit_note:C1", "dispute:D1"
    kind: str
    source_id: str
    currency: str
    amount: Decimal
    date: date
    remaining: Decimal
    # invoice id -> amount reserved for an invoice that has not arrived yet
    earmarks: dict[str, Decimal] = field(default_factory=dict)
    applied_to: dict[str, Decimal] = field(default_factory=dict)
    refunded: Decimal = ZERO  # paid back to the customer out of it
    # the prepayment request it is held for (tagged): only the order's invoice may take it
    held_for: str | None = None
    void: bool = False
    details: dict[str, object] = field(default_factory=dict)

    @property
    def unreserved(self) -> Decimal:
        """The remainder less what waits for named invoices (what a refund may take)."""
        # read for every credit a plan looks at, and most have no earmarks: skip the sum
        # (still ``remaining - ZERO``, so the result's exponent is what it always was)
        return self.remaining - (sum(self.earmarks.values(), ZERO) if self.earmarks else ZERO)

    @property
    def free(self) -> Decimal:
        """What auto-allocation may use: nothing of cash held for a prepayment request, else
        what is unreserved."""
        return ZERO if self.held_for is not None else self.unreserved


@dataclass(slots=True)
class PrepaymentRequest:
    """An advance receipt asked for: in no balance; tagged cash waits for its order's invoice."""

    request_id: str
    currency: str
    amount: Decimal
    requested_date: date
    due_date: date
    order_id: str | None
    record: dict[str, object]  # as requested (a duplicate must match it)
    cancelled_on: date | None = None


@dataclass(slots=True)
class Dispute:
    dispute_id: str
    invoice_id: str
    amount: Decimal
    opened_date: date
    reason: str
    status: str = "open"  # open | accepted | rejected
    # accepted with a credit before its invoice arrived: the credit waits for the invoice
    waiting_credit: Decimal | None = None
    resolved_date: date | None = None


@dataclass(frozen=True, slots=True)
class Application:
    """A decision: ``amount`` of ``credit`` pays ``invoice`` (plus ``discount`` forgiven)."""

    credit: str
    invoice: str
    amount: Decimal
    discount: Decimal
    date: date

    def as_dict(self) -> dict[str, str]:
        return {
            "credit": self.credit, "invoice": self.invoice, "amount": str(self.amount),
            "discount": str(self.discount), "date": self.date.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Application:
        return cls(
            data["credit"], data["invoice"], Decimal(data["amount"]),
            Decimal(data["discount"]), date.fromisoformat(data["date"]),
        )


def oldest_due_first(invoice: Invoice) -> tuple[date, date, str]:
    return invoice.due_date, invoice.issue_date, invoice.invoice_id


def credit_order(credit: Credit) -> tuple[date, str]:
    return credit.date, credit.key


def settle(
    available: Decimal, open_amount: Decimal, invoice: Invoice, credit: Credit,
    *, amount: Decimal | None = None, discounted: bool | None = None,
) -> tuple[Decimal, Decimal]:
    """How much of ``available`` to apply and what discount that earns.

    A cash payment on time that covers the open amount less the cash discount settles
    the invoice; the shortfall is discount taken. Paying in full earns no discount.
    ``amount`` and ``discounted`` are the planner's what-if view of the invoice (an
    adjusted amount, a discount just released); by default the invoice's own.
    """
    if discounted is None:
        discounted = any(invoice.discounts.values())
    if available >= open_amount:
        return open_amount, ZERO
    deadline = invoice.discount_deadline()
    if (
        credit.kind == "payment"
        and deadline is not None
        and credit.date <= deadline
        and not discounted
        and available >= open_amount - invoice.max_discount(amount)
    ):
        return available, open_amount - available
    return available, ZERO


_open_amount = attrgetter("open_amount")
_amount = attrgetter("amount")
_free = attrgetter("free")


def _has_discount(invoice: Invoice) -> bool:
    return any(invoice.discounts.values())


def _live(credit: Credit) -> bool:
    return not credit.void


class Planner:
    """Plans applications against a what-if view of the open amounts and credit remainders.

    The view starts from the book and is adjusted by the caller for what the event itself
    changes (a new invoice, a released payment) before planning.
    """

    def __init__(
        self,
        invoices: Mapping[str, Invoice],
        credits: Mapping[str, Credit],
        event_date: date,
        *,
        unpaid: Set[str] | None = None,
        unspent: Set[str] | None = None,
    ) -> None:
        """``unpaid`` and ``unspent``, when given, name every invoice whose own open amount
        and every credit whose own remainder may be above zero (others may be left out):
        auto-allocation then looks at those and at what the plan changed, not the whole book."""
        self.invoices = invoices
        self.credits = credits
        self.event_date = event_date
        self.unpaid = unpaid
        self.unspent = unspent
        # What-if views that copy nothing up front: a plan touches a few invoices and
        # credits, the book may hold thousands (see overlay.py).
        self.open_amounts: Overlay[str, Invoice, Decimal] = Overlay(invoices, _open_amount)
        self.amounts: Overlay[str, Invoice, Decimal] = Overlay(invoices, _amount)
        # invoices that have had their one cash discount (released ones drop out)
        self.discounted: SetOverlay[str, Invoice] = SetOverlay(invoices, _has_discount)
        self.free: Overlay[str, Credit, Decimal] = Overlay(credits, _free, include=_live)
        self.applications: list[Application] = []
        self.prepaid: set[int] = set()  # which applications paid an order with cash held for it

    def apply(self, credit_key: str, invoice_id: str, limit: Decimal | None = None) -> None:
        """Apply up to ``limit`` (default: all it has free) of a credit to one invoice."""
        credit = self.credits[credit_key]
        invoice = self.invoices[invoice_id]
        if invoice.cancelled or credit.currency != invoice.currency:
            return
        available = self.free[credit_key] if limit is None else min(limit, self.free[credit_key])
        open_amount = self.open_amounts[invoice_id]
        if available <= ZERO or open_amount <= ZERO:
            return
        amount, discount = settle(
            available, open_amount, invoice, credit,
            amount=self.amounts[invoice_id], discounted=invoice_id in self.discounted,
        )
        if amount == ZERO and discount == ZERO:
            return
        if discount:
            self.discounted.add(invoice_id)
        self.free[credit_key] -= amount
        self.open_amounts[invoice_id] -= amount + discount
        when = max(self.event_date, credit.date, invoice.issue_date)
        self.applications.append(Application(credit_key, invoice_id, amount, discount, when))

    def apply_earmark(self, credit_key: str, invoice_id: str, amount: Decimal) -> None:
        """Resolve a reservation for an invoice that has just arrived."""
        self.free[credit_key] += amount  # the reservation becomes usable for this invoice
        self.apply(credit_key, invoice_id, limit=amount)

    def auto_allocate(self, currency: str) -> None:
        """Free credits, oldest first, to open invoices, oldest due date first."""
        free, open_amounts = self.free, self.open_amounts
        # A credit's free amount is at most its remainder (earmarks are never negative), so
        # with an index only the indexed credits and those the plan changed can qualify.
        credit_keys = self.credits.keys() if self.unspent is None else self.unspent | free.written()
        credits = sorted(
            (c for c in map(self.credits.__getitem__, credit_keys)
             if c.currency == currency and not c.void and free.get(c.key, ZERO) > ZERO),
            key=credit_order,
        )
        if not credits:
            return
        invoice_ids = self.invoices.keys() if self.unpaid is None else self.unpaid | open_amounts.written()
        invoices = sorted(
            (i for i in map(self.invoices.__getitem__, invoice_ids)
             if i.currency == currency and not i.cancelled and open_amounts[i.invoice_id] > ZERO),
            key=oldest_due_first,
        )
        for credit in credits:
            for invoice in invoices:
                if self.free[credit.key] <= ZERO:
                    break
                self.apply(credit.key, invoice.invoice_id)


def releases_for(credit: Credit, invoices: dict[str, Invoice], event_date: date) -> list[Application]:
    """Undo every application of a credit (a reversed payment), discounts included.

    That includes a discount whose cash an adjustment has already taken back."""
    released = []
    targets = dict(credit.applied_to)
    for invoice in invoices.values():
        if invoice.discounts.get(credit.key) and invoice.invoice_id not in targets:
            targets[invoice.invoice_id] = ZERO
    for invoice_id, amount in targets.items():
        invoice = invoices[invoice_id]
        discount = invoice.discounts.get(credit.key, ZERO)
        if amount or discount:
            when = max(event_date, invoice.applied_on.get(credit.key, event_date))
            released.append(Application(credit.key, invoice_id, amount, discount, when))
    return released


def releases_from(invoice: Invoice, excess: Decimal | None, event_date: date) -> list[Application]:
    """Undo applications on an invoice, latest first: all of them (``excess`` None), or
    just enough cash to take back ``excess`` of overpayment."""
    released = []
    keys = [*invoice.applied, *(k for k in invoice.discounts if k not in invoice.applied)]
    for credit_key in reversed(keys):
        amount = invoice.applied.get(credit_key, ZERO)
        discount = invoice.discounts.get(credit_key, ZERO)
        # never dated before the application it undoes, so no as-of view goes negative
        when = max(event_date, invoice.applied_on.get(credit_key, event_date))
        if excess is None:
            if amount or discount:
                released.append(Application(credit_key, invoice.invoice_id, amount, discount, when))
            continue
        if excess <= ZERO:
            break
        take = min(amount, excess)
        if take > ZERO:
            released.append(Application(credit_key, invoice.invoice_id, take, ZERO, when))
            excess -= take
    return released
