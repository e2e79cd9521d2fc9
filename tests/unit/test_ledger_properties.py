"""Property test: the ledger domain against an independent, deliberately naive model.

Random message streams for one customer in two currencies (invoices with and without
cash-discount terms, payments with and without allocations, some naming invoices that
arrive later, credit notes applied or on account, disputes, reversals, cancellations,
adjustments, write-offs, refunds within and beyond the unapplied cash, prepayment requests
and withdrawals, payments tagged for them and orders' invoices that take that cash, customer
upserts),
up to 40 messages, with redelivered messages and the topics interleaved at random: mostly
in the order the ERP produced them, often with another topic's message jumping ahead, each
topic keeping its own order (as Kafka keeps it per partition).

The model below is written from the rules in CONTRACT.md and the ledger brief, in integer
cents and plain mutation, without reusing ``book.py`` or the aggregate: it must take the
same accept/refuse decision for every message and reach the same open amounts, statuses,
settled dates, disputed amounts and unapplied cash. Independently of the model, every
step also checks the money invariant, the signs, that free credit never sits next to an
open invoice of its currency, and that each event's ``touched`` equals the resulting
state; at the end the aggregate is rebuilt from its events and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.domain import CustomerAccount, LedgerError
from shared.erp_events import parse_envelope, validate_event

CUSTOMER = "CUST-1"
SOURCE = "erp/test"
BASE = date(2024, 1, 1)
CURRENCIES = ("EUR", "USD")
TOPIC_OF = {
    "invoice.issued": "invoices", "invoice.adjusted": "invoices", "invoice.cancelled": "invoices",
    "invoice.written_off": "invoices", "credit_note.issued": "invoices",
    "prepayment.requested": "invoices", "prepayment.cancelled": "invoices",
    "payment.received": "payments", "payment.reversed": "payments", "payment.refunded": "payments",
    "dispute.opened": "disputes", "dispute.resolved": "disputes",
    "customer.upserted": "customers",
}


def cents(text: str) -> int:
    value = Decimal(text) * 100
    assert value == value.to_integral_value(), text
    return int(value)


def as_text(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


def day(offset: int) -> str:
    return (BASE + timedelta(days=offset)).isoformat()


# --------------------------------------------------------------------------- the model


class Refused(Exception):
    """The model refuses the message (the consumer would dead-letter it)."""


@dataclass
class MInvoice:
    invoice_id: str
    currency: str
    amount: int
    issue: date
    due: date
    percent: Decimal | None
    discount_days: int | None
    content: tuple[Any, ...]
    open: int = 0
    cancelled: bool = False
    written_off: int = 0
    cash: dict[str, int] = field(default_factory=dict)  # credit key -> cash applied, in order
    paid_on: dict[str, date] = field(default_factory=dict)  # credit key -> latest application
    discount: dict[str, int] = field(default_factory=dict)  # credit key -> discount earned
    moves: dict[date, int] = field(default_factory=dict)  # effective date -> net change of open
    order_id: str | None = None  # (its attributes': a prepayment for the order waits for it)

    def move(self, on: date, delta: int) -> None:
        self.moves[on] = self.moves.get(on, 0) + delta

    @property
    def settled(self) -> date | None:
        """The effective date on which the open amount reached zero (and stayed there)."""
        if self.cancelled or self.open != 0:
            return None
        return max((on for on, delta in self.moves.items() if delta), default=self.issue)

    def max_discount(self) -> int:
        if not self.percent or self.discount_days is None:
            return 0
        exact = Decimal(self.amount) * self.percent / 100
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def discount_window_open(self, paid: date) -> bool:
        return (
            bool(self.percent) and self.discount_days is not None
            and paid <= self.issue + timedelta(days=self.discount_days)
        )

    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.open == 0:
            return "written_off" if self.written_off else "paid"
        return "partially_paid" if self.open < self.amount else "open"


@dataclass
class MCredit:
    key: str
    kind: str  # payment | credit_note | dispute_credit
    currency: str
    amount: int
    when: date
    remaining: int
    earmarks: dict[str, int] = field(default_factory=dict)
    void: bool = False
    held_for: str | None = None  # the prepayment request its cash waits for

    @property
    def unreserved(self) -> int:
        return self.remaining - sum(self.earmarks.values())

    @property
    def free(self) -> int:
        return 0 if self.held_for is not None else self.unreserved


@dataclass
class MDispute:
    dispute_id: str
    invoice_id: str
    amount: int
    opened: date
    status: str = "open"
    waiting_credit: int = 0  # accepted with a credit before its invoice arrived
    resolved: date | None = None


class Model:
    def __init__(self) -> None:
        self.invoices: dict[str, MInvoice] = {}
        self.credits: dict[str, MCredit] = {}
        self.disputes: dict[str, MDispute] = {}
        self.profile: dict[str, Any] | None = None
        self.seen: set[tuple[str, str]] = set()
        self.refunds: dict[str, tuple[str, int, str, str | None]] = {}
        # request id -> (content, cancelled): a request is no receivable
        self.requests: dict[str, tuple[tuple[Any, ...], bool]] = {}

    # -- entry point

    def handle(self, message: dict[str, Any]) -> bool:
        """True if applied, False for a message already processed; raises Refused."""
        key = (message["source"], message["id"])
        if key in self.seen:
            return False
        handler = getattr(self, "on_" + message["type"].replace(".", "_"))
        handler(message["data"])  # every handler checks before it changes anything
        self.seen.add(key)
        return True

    # -- movements

    def pay(self, credit: MCredit, invoice: MInvoice, limit: int | None, when: date) -> None:
        if invoice.cancelled or invoice.currency != credit.currency:
            return
        available = credit.free if limit is None else min(limit, credit.free)
        if available <= 0 or invoice.open <= 0:
            return
        discount = 0
        if available >= invoice.open:
            cash = invoice.open
        else:
            cash = available
            if (
                credit.kind == "payment"
                and invoice.discount_window_open(credit.when)
                and not any(invoice.discount.values())
                and available >= invoice.open - invoice.max_discount()
            ):
                discount = invoice.open - available
        dated = max(when, credit.when, invoice.issue)
        invoice.move(dated, -(cash + discount))
        credit.remaining -= cash
        invoice.cash[credit.key] = invoice.cash.get(credit.key, 0) + cash
        invoice.paid_on[credit.key] = dated
        if discount:
            invoice.discount[credit.key] = discount
        invoice.open -= cash + discount

    def release(self, invoice: MInvoice, key: str, cash: int, discount: int, when: date) -> None:
        invoice.move(max(when, invoice.paid_on.get(key, when)), cash + discount)
        if cash:
            invoice.cash[key] -= cash
            if invoice.cash[key] == 0:
                del invoice.cash[key]
        if discount:
            invoice.discount[key] -= discount
            if invoice.discount[key] == 0:
                del invoice.discount[key]
        if key not in invoice.cash and key not in invoice.discount:
            del invoice.paid_on[key]
        self.credits[key].remaining += cash
        invoice.open += cash + discount

    def allocate(self, currency: str, when: date) -> None:
        """Free credit, oldest first, to open invoices, oldest due date first."""
        credits = sorted(
            (c for c in self.credits.values() if c.currency == currency and not c.void and c.free > 0),
            key=lambda c: (c.when, c.key),
        )
        invoices = sorted(
            (i for i in self.invoices.values()
             if i.currency == currency and not i.cancelled and i.open > 0),
            key=lambda i: (i.due, i.issue, i.invoice_id),
        )
        for credit in credits:
            for invoice in invoices:
                if credit.free <= 0:
                    break
                self.pay(credit, invoice, None, when)

    # -- handlers

    def on_invoice_issued(self, data: dict[str, Any]) -> None:
        terms = data.get("terms") or {}
        percent = Decimal(terms["discount_percent"]) if terms.get("discount_percent") else None
        content = (data["currency"], cents(data["amount"]), data["issue_date"], data["due_date"],
                   percent, terms.get("discount_days"), data.get("attributes") or {})
        existing = self.invoices.get(data["invoice_id"])
        if existing is not None:
            if existing.content == content:
                return
            raise Refused("same invoice id, different content")
        invoice = MInvoice(
            data["invoice_id"], data["currency"], cents(data["amount"]),
            date.fromisoformat(data["issue_date"]), date.fromisoformat(data["due_date"]),
            percent, terms.get("discount_days"), content,
        )
        invoice.open = invoice.amount
        invoice.order_id = (data.get("attributes") or {}).get("order_id")
        invoice.move(invoice.issue, invoice.amount)
        self.invoices[invoice.invoice_id] = invoice
        currencies = {invoice.currency}
        for credit in list(self.credits.values()):
            if invoice.invoice_id in credit.earmarks:
                reserved = credit.earmarks.pop(invoice.invoice_id)
                currencies.add(credit.currency)
                self.pay(credit, invoice, reserved, invoice.issue)
        if invoice.order_id:
            self.pay_order(invoice.order_id, invoice, invoice.issue)
        for currency in sorted(currencies):
            self.allocate(currency, invoice.issue)
        for dispute in self.disputes.values():  # credits of disputes accepted before the invoice
            if dispute.invoice_id == invoice.invoice_id and dispute.waiting_credit:
                assert dispute.resolved is not None
                credit = self.new_credit(f"dispute:{dispute.dispute_id}", "dispute_credit",
                                         invoice.currency, dispute.waiting_credit, dispute.resolved)
                dispute.waiting_credit = 0
                self.pay(credit, invoice, None, credit.when)
                self.allocate(invoice.currency, credit.when)

    def order_of(self, credit: MCredit) -> str | None:
        """The order a held credit waits for (its request known and standing), else None."""
        request = self.requests.get(credit.held_for or "")
        return None if request is None or request[1] else request[0][5]

    def pay_order(self, order_id: str, invoice: MInvoice, when: date,
                  only: str | None = None) -> None:
        """The order's invoice takes the cash held for the order's requests (or for request
        ``only``), oldest first; what is left of it is ordinary cash."""
        held = sorted((c for c in self.credits.values() if c.held_for is not None and not c.void
                       and c.remaining > 0 and c.currency == invoice.currency
                       and (c.held_for == only if only else self.order_of(c) == order_id)),
                      key=lambda c: (c.when, c.key))
        for credit in held:
            credit.held_for = None
            self.pay(credit, invoice, None, when)

    def order_invoice(self, order_id: str, currency: str) -> MInvoice | None:
        found = [i for i in self.invoices.values()
                 if i.currency == currency and not i.cancelled and i.open > 0 and i.order_id == order_id]
        return min(found, key=lambda i: (i.due, i.issue, i.invoice_id)) if found else None

    def on_prepayment_requested(self, data: dict[str, Any]) -> None:
        content = (data["request_id"], data["currency"], cents(data["amount"]), data["requested_date"],
                   data["due_date"], data.get("order_id"))
        if data["request_id"] in self.requests:
            if self.requests[data["request_id"]][0] != content:
                raise Refused("request id reused")
            return
        if data["request_id"] in self.invoices:
            raise Refused("a request with an invoice's id")
        self.requests[data["request_id"]] = (content, False)
        for credit in self.credits.values():  # a reservation made for this id becomes its tag
            if data["request_id"] in credit.earmarks and credit.held_for is None and credit.remaining > 0 \
                    and not credit.void:
                del credit.earmarks[data["request_id"]]
                credit.held_for = data["request_id"]
        order_id = data.get("order_id")
        invoice = self.order_invoice(order_id, data["currency"]) if order_id else None
        if invoice is not None:
            self.pay_order(order_id, invoice, date.fromisoformat(data["requested_date"]),
                           only=data["request_id"])
            self.allocate(data["currency"], date.fromisoformat(data["requested_date"]))

    def on_prepayment_cancelled(self, data: dict[str, Any]) -> None:
        request = self.requests.get(data["request_id"])
        if request is None:
            raise Refused("unknown request")
        if request[1]:
            return
        self.requests[data["request_id"]] = (request[0], True)
        released = set()
        for credit in self.credits.values():
            if credit.held_for == data["request_id"] and not credit.void:
                credit.held_for = None
                released.add(credit.currency)
        for currency in sorted(released):
            self.allocate(currency, date.fromisoformat(data["effective_date"]))

    def live_invoice(self, invoice_id: str) -> MInvoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.cancelled:
            raise Refused(f"no live invoice {invoice_id}")
        return invoice

    def on_invoice_adjusted(self, data: dict[str, Any]) -> None:
        invoice = self.live_invoice(data["invoice_id"])
        new_amount = cents(data["new_amount"])
        when = date.fromisoformat(data["effective_date"])
        if new_amount == invoice.amount:
            return
        if new_amount < invoice.written_off + sum(invoice.discount.values()):
            raise Refused("below write-offs and discounts")
        invoice.move(max(when, invoice.issue), new_amount - invoice.amount)
        invoice.open += new_amount - invoice.amount
        invoice.amount = new_amount
        excess = -invoice.open
        for key in reversed(list(invoice.cash)):  # latest applications first
            if excess <= 0:
                break
            take = min(invoice.cash[key], excess)
            self.release(invoice, key, take, 0, when)
            excess -= take
        self.allocate(invoice.currency, when)

    def on_invoice_cancelled(self, data: dict[str, Any]) -> None:
        invoice = self.invoices.get(data["invoice_id"])
        if invoice is None:
            raise Refused("unknown invoice")
        if invoice.cancelled:
            return
        when = date.fromisoformat(data["effective_date"])
        for key in list(invoice.cash):
            self.release(invoice, key, invoice.cash[key], invoice.discount.get(key, 0), when)
        invoice.discount.clear()
        invoice.open = 0
        invoice.cancelled = True
        self.allocate(invoice.currency, when)

    def on_invoice_written_off(self, data: dict[str, Any]) -> None:
        invoice = self.live_invoice(data["invoice_id"])
        amount = cents(data["amount"])
        if amount <= 0 or amount > invoice.open:
            raise Refused("write-off not within the open amount")
        invoice.move(max(date.fromisoformat(data["effective_date"]), invoice.issue), -amount)
        invoice.open -= amount
        invoice.written_off += amount

    def new_credit(self, key: str, kind: str, currency: str, amount: int, when: date,
                   earmarks: dict[str, int] | None = None) -> MCredit:
        credit = MCredit(key, kind, currency, amount, when, amount, earmarks or {})
        self.credits[key] = credit
        return credit

    def duplicate_credit(self, key: str, currency: str, amount: int, when: date) -> bool:
        existing = self.credits.get(key)
        if existing is None:
            return False
        if (existing.currency, existing.amount, existing.when) != (currency, amount, when):
            raise Refused(f"{key} again with different content")
        return True

    def on_credit_note_issued(self, data: dict[str, Any]) -> None:
        key = f"credit_note:{data['credit_note_id']}"
        amount, when = cents(data["amount"]), date.fromisoformat(data["issue_date"])
        if self.duplicate_credit(key, data["currency"], amount, when):
            return
        invoice_id = data.get("invoice_id")
        target = self.invoices.get(invoice_id) if invoice_id else None
        if target is not None and target.currency != data["currency"]:
            raise Refused("credit note currency mismatch")
        earmarks = {invoice_id: amount} if invoice_id and target is None else {}
        credit = self.new_credit(key, "credit_note", data["currency"], amount, when, earmarks)
        if target is not None:
            self.pay(credit, target, None, when)
        self.allocate(credit.currency, when)

    def on_payment_received(self, data: dict[str, Any]) -> None:
        key = f"payment:{data['payment_id']}"
        amount, when = cents(data["amount"]), date.fromisoformat(data["received_date"])
        if self.duplicate_credit(key, data["currency"], amount, when):
            return
        earmarks: dict[str, int] = {}
        explicit: list[tuple[MInvoice, int]] = []
        tag = data.get("prepayment_request_id") or next(
            (a["invoice_id"] for a in data.get("allocations", []) if a["invoice_id"] in self.requests), None)
        for allocation in data.get("allocations", []) if tag is None else []:
            invoice = self.invoices.get(allocation["invoice_id"])
            share = cents(allocation["amount"])
            if invoice is None:
                earmarks[allocation["invoice_id"]] = earmarks.get(allocation["invoice_id"], 0) + share
            elif invoice.currency != data["currency"]:
                raise Refused("payment allocation currency mismatch")
            else:
                explicit.append((invoice, share))
        credit = self.new_credit(key, "payment", data["currency"], amount, when, earmarks)
        credit.held_for = tag
        for invoice, share in explicit:
            self.pay(credit, invoice, share, when)
        request = self.requests.get(tag or "")
        if request is not None and request[1]:
            credit.held_for = None  # its request was withdrawn: ordinary cash
        elif request is not None and request[0][5]:
            invoice = self.order_invoice(request[0][5], credit.currency)
            if invoice is not None:
                self.pay_order(request[0][5], invoice, when)
        self.allocate(credit.currency, when)

    def on_payment_reversed(self, data: dict[str, Any]) -> None:
        credit = self.credits.get(f"payment:{data['payment_id']}")
        if credit is None:
            raise Refused("unknown payment")
        if credit.void:
            return
        when = date.fromisoformat(data["effective_date"])
        for invoice in self.invoices.values():
            cash, discount = invoice.cash.get(credit.key, 0), invoice.discount.get(credit.key, 0)
            if cash or discount:
                self.release(invoice, credit.key, cash, discount, when)
        credit.void = True
        credit.remaining = 0
        credit.earmarks = {}
        self.allocate(credit.currency, when)

    def on_payment_refunded(self, data: dict[str, Any]) -> None:
        """Money paid back: the payment's unreserved remainder, or the oldest credits'; all or nothing."""
        asked = (data["currency"], cents(data["amount"]), data["refund_date"], data.get("payment_id"))
        if data["refund_id"] in self.refunds:
            if self.refunds[data["refund_id"]] != asked:
                raise Refused("refund id reused")
            return
        currency, amount, _, payment_id = asked
        if payment_id is not None:
            credit = self.credits.get(f"payment:{payment_id}")
            if credit is None or credit.void or credit.currency != currency:
                raise Refused("refund of an unknown or reversed payment, or in another currency")
            sources = [credit]
        else:
            sources = sorted((c for c in self.credits.values() if c.currency == currency and not c.void),
                             key=lambda c: (c.when, c.key))
        if sum(max(0, c.unreserved) for c in sources) < amount:
            raise Refused("refund beyond the unapplied cash")
        left = amount
        for credit in sources:
            take = min(left, max(0, credit.unreserved))
            credit.remaining -= take
            left -= take
        self.refunds[data["refund_id"]] = asked

    def on_dispute_opened(self, data: dict[str, Any]) -> None:
        amount, opened = cents(data["amount"]), date.fromisoformat(data["opened_date"])
        existing = self.disputes.get(data["dispute_id"])
        if existing is not None:
            if (existing.invoice_id, existing.amount, existing.opened) == (
                data["invoice_id"], amount, opened
            ):
                return
            raise Refused("dispute id again with different content")
        invoice = self.invoices.get(data["invoice_id"])
        if invoice is not None and amount > invoice.amount:
            raise Refused("dispute above the invoice amount")
        self.disputes[data["dispute_id"]] = MDispute(data["dispute_id"], data["invoice_id"], amount, opened)

    def on_dispute_resolved(self, data: dict[str, Any]) -> None:
        dispute = self.disputes.get(data["dispute_id"])
        if dispute is None:
            raise Refused("unknown dispute")
        if dispute.status != "open":
            return
        dispute.status = data["outcome"]
        credited = cents(data.get("credited_amount") or "0")
        when = date.fromisoformat(data["resolved_date"])
        if data["outcome"] != "accepted" or credited == 0:
            return
        invoice = self.invoices.get(dispute.invoice_id)
        if invoice is None:  # waits for its invoice, like the dispute itself
            dispute.waiting_credit, dispute.resolved = credited, when
            return
        credit = self.new_credit(f"dispute:{dispute.dispute_id}", "dispute_credit",
                                 invoice.currency, credited, when)
        self.pay(credit, invoice, None, when)
        self.allocate(invoice.currency, when)

    def on_customer_upserted(self, data: dict[str, Any]) -> None:
        self.profile = {k: v for k, v in data.items() if k != "customer_id"}

    # -- what the test compares

    def disputed(self, invoice: MInvoice) -> int:
        contested = sum(d.amount for d in self.disputes.values()
                        if d.invoice_id == invoice.invoice_id and d.status == "open")
        return min(contested, invoice.open)

    def unapplied(self, currency: str) -> int:
        return sum(c.remaining for c in self.credits.values() if c.currency == currency and not c.void)


# --------------------------------------------------------------------------- streams

MAX_MESSAGES = 40
INVOICE_IDS = ("I1", "I2", "I3", "I4", "I5")
AMOUNTS = st.one_of(
    st.sampled_from([100000, 50000, 98000, 49000, 25000, 2000, 100, 75050]),
    st.integers(1, 150000),
)
# Fractions of an invoice's amount: on the discount edges (2% and 3.5% terms), halves,
# overpayments; amounts derived from invoices make discounts and exact settlements common.
FRACTIONS = st.sampled_from(["1", "1", "0.98", "0.965", "0.97", "0.5", "0.49", "0.48", "0.3", "1.2", "2"])
MESSAGE_KINDS = (
    ["invoice.issued"] * 5 + ["payment.received"] * 6 + ["credit_note.issued"] * 2
    + ["invoice.adjusted"] * 2 + ["invoice.cancelled", "invoice.written_off"] + ["payment.reversed"] * 2
    + ["dispute.opened"] * 2 + ["dispute.resolved"] * 2 + ["redelivery"] * 2 + ["customer.upserted"]
    # another payment like an earlier one (same amount, date, allocations): once the first
    # has paid, the twin is unapplied cash that a reversal or an adjustment puts to work
    + ["payment.twin"] * 2 + ["payment.refunded"] * 2
    + ["prepayment.requested"] * 2 + ["prepayment.cancelled"]
)
REQUEST_IDS = ("RQ1", "RQ2", "RQ3")
ORDER_IDS = ("O1", "O2")


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Messages per topic in ERP order, then interleaved across topics at random."""
    topics: dict[str, list[dict[str, Any]]] = {"invoices": [], "payments": [], "disputes": [],
                                               "customers": []}
    invoices: dict[str, dict[str, Any]] = {}  # the first issue of each invoice id
    currency_of = {i: draw(st.sampled_from(["EUR", "EUR", "USD"])) for i in INVOICE_IDS}
    payments: list[str] = []
    sent_payments: list[dict[str, Any]] = []
    disputes: list[str] = []
    counter = 0

    def emit(kind: str, data: dict[str, Any]) -> None:
        nonlocal counter
        counter += 1
        message = {
            "specversion": "1.0", "id": f"m{counter}", "source": SOURCE, "type": kind,
            "subject": CUSTOMER, "data": {"customer_id": CUSTOMER, **data},
        }
        topics[TOPIC_OF[kind]].append(message)

    def some_invoice() -> str:
        """Mostly one already issued in this stream, sometimes one that comes later or never."""
        if invoices and draw(st.integers(0, 3)) > 0:
            return draw(st.sampled_from(sorted(invoices)))
        return draw(st.sampled_from(INVOICE_IDS))

    def amount_for(invoice_id: str) -> int:
        """An amount shaped by the invoice (if issued yet), else any amount."""
        if invoice_id in invoices and draw(st.integers(0, 3)) > 0:
            base = Decimal(cents(invoices[invoice_id]["amount"]))
            return max(1, int(base * Decimal(draw(FRACTIONS))))
        return draw(AMOUNTS)

    def date_for(invoice_id: str) -> str:
        """A date near the invoice's discount window (if issued yet), else any date."""
        if invoice_id in invoices and draw(st.integers(0, 3)) > 0:
            issued = date.fromisoformat(invoices[invoice_id]["issue_date"])
            return (issued + timedelta(days=draw(st.integers(-3, 14)))).isoformat()
        return day(draw(dates))

    dates = st.integers(0, 30)
    length = draw(st.integers(1, MAX_MESSAGES))
    while sum(map(len, topics.values())) < length:
        kind = draw(st.sampled_from(MESSAGE_KINDS))
        if kind == "invoice.issued":
            fresh = [i for i in INVOICE_IDS if i not in invoices]
            target = draw(st.sampled_from(fresh)) if fresh and draw(st.integers(0, 4)) else some_invoice()
            if target in invoices and draw(st.integers(0, 4)):
                emit(kind, invoices[target])  # the same invoice again under a new message id
                continue
            issued = draw(dates)
            data: dict[str, Any] = {
                "invoice_id": target, "currency": currency_of[target], "amount": as_text(draw(AMOUNTS)),
                "issue_date": day(issued), "due_date": day(issued + draw(st.sampled_from([0, 10, 30]))),
            }
            if draw(st.integers(0, 2)):
                data["terms"] = {"net_days": 30, "discount_percent": draw(st.sampled_from(["2", "3.5"])),
                                 "discount_days": draw(st.sampled_from([5, 10]))}
            if draw(st.integers(0, 2)) == 0:  # an order's invoice: prepayments for the order wait for it
                data["attributes"] = {"order_id": draw(st.sampled_from(ORDER_IDS))}
            invoices.setdefault(target, data)
            emit(kind, data)
        elif kind == "payment.received":
            with_terms = sorted(i for i, d in invoices.items() if d.get("terms"))
            edge = bool(with_terms) and draw(st.booleans())
            target = draw(st.sampled_from(with_terms)) if edge else some_invoice()
            amount = amount_for(target)
            received = date_for(target)
            allocations = []
            if edge:  # right on the edge of the cash discount, in or just after its window
                terms, full = invoices[target]["terms"], cents(invoices[target]["amount"])
                amount = max(1, full - int(full * Decimal(terms["discount_percent"]) / 100)
                             + draw(st.integers(-1, 1)))
                allocations.append({"invoice_id": target, "amount": as_text(amount)})
                issued = date.fromisoformat(invoices[target]["issue_date"])
                late = draw(st.integers(0, terms["discount_days"] + 2))
                received = (issued + timedelta(days=late)).isoformat()
            currency = currency_of[target] if draw(st.integers(0, 4)) else draw(st.sampled_from(CURRENCIES))
            if payments and draw(st.integers(0, 9)) == 0:
                payment_id = draw(st.sampled_from(payments))  # an id again: usually a conflict
            else:
                payment_id = f"P{len(payments) + 1}"
            left = amount - sum(cents(a["amount"]) for a in allocations)
            for _ in range(draw(st.integers(0, 2))):
                share = draw(st.sampled_from([left, left // 2, draw(st.integers(0, left))]))
                allocations.append({"invoice_id": draw(st.sampled_from([target, some_invoice()])),
                                    "amount": as_text(share)})
                left -= share
            data = {"payment_id": payment_id, "currency": currency, "amount": as_text(amount),
                    "received_date": received}
            if allocations:
                data["allocations"] = allocations
            tagged = draw(st.integers(0, 3))
            if tagged == 0:  # a prepayment, its request sent or not (yet)
                data["prepayment_request_id"] = draw(st.sampled_from(REQUEST_IDS))
            elif tagged == 1:  # allocated to a request's id (sent or not)
                data["allocations"] = [{"invoice_id": draw(st.sampled_from(REQUEST_IDS)),
                                        "amount": as_text(amount)}]
            payments.append(payment_id)
            sent_payments.append(data)
            emit(kind, data)
        elif kind == "payment.twin":
            if sent_payments:
                original = draw(st.sampled_from(sent_payments[-2:]))
                payments.append(f"P{len(payments) + 1}")
                twin = {**original, "payment_id": payments[-1]}
                sent_payments.append(twin)
                emit("payment.received", twin)
                follow_up = draw(st.sampled_from(["none", "reverse", "adjust"]))
                if follow_up == "reverse":  # the first one bounces: the twin takes its place
                    emit("payment.reversed", {"payment_id": original["payment_id"],
                                              "effective_date": day(draw(dates)), "reason": "bounced"})
                elif follow_up == "adjust" and original.get("allocations"):
                    target = original["allocations"][0]["invoice_id"]
                    emit("invoice.adjusted", {"invoice_id": target, "new_amount": as_text(amount_for(target)),
                                              "effective_date": date_for(target), "reason": "price"})
        elif kind == "credit_note.issued":
            target = some_invoice()
            currency = currency_of[target] if draw(st.integers(0, 4)) else draw(st.sampled_from(CURRENCIES))
            data = {"credit_note_id": f"N{counter}", "currency": currency,
                    "amount": as_text(amount_for(target)), "issue_date": day(draw(dates))}
            if draw(st.booleans()):
                data["invoice_id"] = target
            emit(kind, data)
        elif kind == "invoice.adjusted":
            target = some_invoice()
            emit(kind, {"invoice_id": target, "new_amount": as_text(amount_for(target)),
                        "effective_date": day(draw(dates)), "reason": "price"})
        elif kind == "invoice.cancelled":
            emit(kind, {"invoice_id": some_invoice(), "effective_date": day(draw(dates)),
                        "reason": "error"})
        elif kind == "invoice.written_off":
            target = some_invoice()
            emit(kind, {"invoice_id": target, "amount": as_text(amount_for(target)),
                        "effective_date": day(draw(dates)), "reason": "bad debt"})
        elif kind == "payment.reversed":
            known = payments[-3:] if payments and draw(st.integers(0, 5)) else ["P404"]
            emit(kind, {"payment_id": draw(st.sampled_from(known)),
                        "effective_date": day(draw(dates)), "reason": "bounced"})
        elif kind == "dispute.opened":
            dispute_id = (draw(st.sampled_from(disputes)) if disputes and draw(st.integers(0, 5)) == 0
                          else f"D{len(disputes) + 1}")
            disputes.append(dispute_id)
            target = some_invoice()
            emit(kind, {"dispute_id": dispute_id, "invoice_id": target,
                        "amount": as_text(amount_for(target)), "opened_date": day(draw(dates)),
                        "reason": "quality"})
        elif kind == "dispute.resolved":
            outcome = draw(st.sampled_from(["accepted", "accepted", "rejected"]))
            known = disputes if disputes and draw(st.integers(0, 5)) else ["D404"]
            data = {"dispute_id": draw(st.sampled_from(known)), "invoice_id": "?",
                    "resolved_date": day(draw(dates)), "outcome": outcome}
            if outcome == "accepted" and draw(st.booleans()):
                data["credited_amount"] = as_text(draw(AMOUNTS))
            emit(kind, data)
        elif kind == "customer.upserted":
            emit(kind, {"name": draw(st.sampled_from(["Acme", "Acme GmbH"]))})
        elif kind == "prepayment.requested":
            request_id = draw(st.sampled_from(REQUEST_IDS))
            data = {"request_id": request_id, "currency": draw(st.sampled_from(["EUR", "EUR", "USD"])),
                    "amount": as_text(draw(AMOUNTS)), "requested_date": day(draw(dates)), "due_date": day(20)}
            if draw(st.integers(0, 4)):
                data["order_id"] = draw(st.sampled_from(ORDER_IDS))
            sent = [m["data"] for m in topics["invoices"]
                    if m["type"] == kind and m["data"]["request_id"] == request_id]
            emit(kind, {k: v for k, v in (sent[0] if sent and draw(st.integers(0, 2)) else data).items()
                        if k != "customer_id"})
        elif kind == "prepayment.cancelled":
            emit(kind, {"request_id": draw(st.sampled_from(REQUEST_IDS)), "effective_date": day(draw(dates)),
                        "reason": "order dropped"})
        elif kind == "payment.refunded":
            # mostly small (some beyond the unapplied cash), of a payment sent or not, or of the
            # oldest cash; now and then an id again, the same refund or another
            refunds = [m["data"] for m in topics["payments"] if m["type"] == kind]
            if refunds and draw(st.integers(0, 4)) == 0:
                data = dict(draw(st.sampled_from(refunds)))
                if draw(st.booleans()):
                    data["amount"] = as_text(cents(data["amount"]) + 1)
            else:
                data = {"refund_id": f"R{len(refunds) + 1}", "currency": draw(st.sampled_from(CURRENCIES)),
                        "amount": as_text(draw(st.integers(1, 20000))), "refund_date": day(draw(dates))}
                if payments and draw(st.booleans()):
                    data["payment_id"] = draw(st.sampled_from([*payments[-3:], "P404"]))
            emit(kind, {k: v for k, v in data.items() if k != "customer_id"})
        else:  # redelivery: a message already sent comes again later on its topic
            sent = [m for messages in topics.values() for m in messages]
            if sent:
                again = draw(st.sampled_from(sent))
                topics[TOPIC_OF[again["type"]]].append(again)
    # Interleave the topics: mostly in the order the ERP produced the messages, but often
    # another topic's next message jumps ahead (each topic keeps its own order).
    queues = {name: list(messages) for name, messages in topics.items() if messages}
    produced = {id(m): int(m["id"][1:]) for ms in topics.values() for m in ms}
    stream = []
    while queues:
        if len(queues) > 1 and draw(st.integers(0, 3)) == 0:
            name = draw(st.sampled_from(sorted(queues)))
        else:
            name = min(queues, key=lambda q: produced[id(queues[q][0])])
        stream.append(queues[name].pop(0))
        if not queues[name]:
            del queues[name]
    del stream[MAX_MESSAGES:]  # a twin and its follow-up may overshoot by one
    return stream


# --------------------------------------------------------------------------- checks


def check_events_touched(account: CustomerAccount, events: list[Any]) -> None:
    """The last outcome an event reports for an invoice is the invoice's resulting state."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        latest.update(getattr(event, "touched", None) or {})
    for invoice_id, outcome in latest.items():
        invoice = account.invoices[invoice_id]
        assert Decimal(outcome["open_amount"]) == invoice.open_amount, (invoice_id, outcome)
        assert outcome["status"] == invoice.status, (invoice_id, outcome)
        settled = invoice.settled_date.isoformat() if invoice.settled_date else None
        assert outcome["settled_date"] == settled, (invoice_id, outcome)
        assert outcome["currency"] == invoice.currency


def check_against_model(account: CustomerAccount, model: Model) -> None:
    assert set(account.invoices) == set(model.invoices)
    for invoice_id, expected in model.invoices.items():
        actual = account.invoices[invoice_id]
        got = (cents(str(actual.open_amount)), actual.status, actual.settled_date,
               cents(str(actual.disputed_amount)), cents(str(actual.amount)),
               cents(str(actual.discount_taken)), cents(str(actual.written_off)))
        want = (expected.open, expected.status(), expected.settled, model.disputed(expected),
                expected.amount, sum(expected.discount.values()), expected.written_off)
        assert got == want, f"{invoice_id}: domain {got} != model {want}"
    assert set(account.credits) == set(model.credits)
    for key, expected in model.credits.items():
        actual = account.credits[key]
        got = (cents(str(actual.remaining)), actual.void,
               {k: cents(str(v)) for k, v in actual.earmarks.items() if v})
        want = (expected.remaining, expected.void, {k: v for k, v in expected.earmarks.items() if v})
        assert got == want, f"{key}: domain {got} != model {want}"
    for currency in CURRENCIES:
        assert cents(str(account.totals(currency)["unapplied"])) == model.unapplied(currency)
    assert {d: (x.status, x.waiting_credit and cents(str(x.waiting_credit)))
            for d, x in account.disputes.items()} == {
        d: (x.status, x.waiting_credit or None) for d, x in model.disputes.items()}


def check_invariants(account: CustomerAccount) -> None:
    for currency in CURRENCIES:
        t = account.totals(currency)
        assert (t["invoiced"] - t["credited"] - t["written_off"] - t["discounts"] - t["received"]
                == t["open"] - t["unapplied"]), (currency, t)
        assert t["open"] >= 0 and t["unapplied"] >= 0 and t["disputed"] <= t["open"]
        free = sum((c.free for c in account.credits.values()
                    if c.currency == currency and not c.void), Decimal(0))
        open_invoices = [i.invoice_id for i in account.invoices.values()
                         if i.currency == currency and not i.cancelled and i.open_amount > 0]
        assert not (free > 0 and open_invoices), (currency, free, open_invoices)
    for invoice in account.invoices.values():
        assert 0 <= invoice.open_amount <= invoice.amount
        assert 0 <= invoice.disputed_amount <= invoice.open_amount
    for credit in account.credits.values():
        assert credit.remaining >= 0 and credit.free >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_domain_agrees_with_the_model(stream: list[dict[str, Any]]) -> None:
    account = CustomerAccount(customer_id=CUSTOMER)
    model = Model()
    history = list(account.collect_events())
    for raw in stream:
        message = validate_event(parse_envelope(raw))
        try:
            applied = account.handle(message)
            refused = None
        except LedgerError as error:
            applied, refused = False, error
        try:
            expected = model.handle(raw)
            model_refused = None
        except Refused as reason:
            expected, model_refused = False, reason
        assert (refused is None) == (model_refused is None), (raw, refused, model_refused)
        assert applied == expected, raw
        events = account.collect_events()
        if not applied:  # refused or redelivered: no effect at all
            assert events == [], raw
        history.extend(events)
        check_events_touched(account, events)
        check_invariants(account)
        check_against_model(account, model)

    rebuilt = None
    for event in history:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None
    assert rebuilt.invoices == account.invoices
    assert rebuilt.credits == account.credits
    assert rebuilt.disputes == account.disputes
    assert rebuilt.processed == account.processed
