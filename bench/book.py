"""A synthetic receivables book: the ERP's inbound CloudEvents for N customers.

``generate_book(customers=10_000, events=300_000)`` returns exactly ``events`` Kafka
messages (topic, key, value) in publish order, keyed by customer id, with a realistic mix:

- ``customer.upserted``: every customer once before its first event, plus profile updates;
- ``invoice.issued`` (~40%), a few customers with hundreds of invoices, most with a handful;
  ~15% carry 2/10 net 30 cash-discount terms; three currencies (EUR, USD, JPY);
- ``payment.received`` (~35%): mostly one payment per invoice with an explicit allocation,
  some without allocations (oldest due first), some partial (followed by the rest), some
  over (leaving unapplied cash), some early with the cash discount, some paying several
  invoices at once, some on account;
- ``credit_note.issued``, ``invoice.adjusted``, ``invoice.cancelled``, ``invoice.written_off``,
  ``dispute.opened`` / ``dispute.resolved`` (accepted with a credit, or rejected),
  ``payment.reversed`` (~1%);
- a few exact duplicates (same ``source``/``id``) re-published later, and a handful of
  invalid messages (not JSON, negative amount) that belong on the dead-letter topic;
- with ``advance`` (a share of all messages, 0 by default), advance-receipt traffic:
  ``prepayment.requested`` (most with an ``order_id``), ``payment.received`` tagged with
  ``prepayment_request_id`` (some dated before their request), a few ``prepayment.cancelled``
  and some ``payment.refunded`` (see ``ADVANCE_GROUPS``). Every other type's share shrinks
  in proportion; ``advance=0`` gives the very same book as before it existed;
- with ``habits=True``, customers whose payment habits differ and drift (``HABITS``), so that
  a payment model has something to learn; without, every invoice draws its pay day from the
  same mix (and the book is the very same as before habits existed).

Advance traffic comes per request, in groups: *ordered* (the request and its payment; the
order's invoice, an ``invoice.issued`` with ``attributes.order_id``, is one of the book's
invoices, issued later and kept apart from the other changes; the prepayment is the whole
invoice or a deposit of 20-50% of it, whose balance an ordinary allocated payment pays after
the invoice); *held* (the request and its payment, nothing of the order invoiced within the
book, or a deposit without order: the cash stays held to the end; most of these are partly
or wholly refunded, naming the payment); *cancelled* (the request withdrawn; some were paid
before); *unpaid* (the request alone). Refunds only ever take from held cash that nothing
else may take (its request is never withdrawn and no invoice of its order exists), after
the payment on ``ar.payments``, at most its amount: whatever the order between topics, the
ledger cannot refuse one. Cash that may be released (cancelled requests', what an order's
invoice leaves) only goes to customers without a write-off (``_Customer.protected``).

Each topic is in business-date order (a dependent event, such as a reversal, always comes
after what it depends on in the same topic); topics carry no order between them, so a
payment may well be consumed before its invoice, as the contract allows. The generator is
deterministic for a given seed. Everything is built with integers in minor units and
plain dicts, so 300,000 messages take a few seconds.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

INVOICES_TOPIC = "ar.invoices"
PAYMENTS_TOPIC = "ar.payments"
DISPUTES_TOPIC = "ar.disputes"
CUSTOMERS_TOPIC = "ar.customers"
INBOUND_TOPICS = (INVOICES_TOPIC, PAYMENTS_TOPIC, DISPUTES_TOPIC, CUSTOMERS_TOPIC)

SOURCE = "erp/bench"
EPOCH = date(2024, 1, 1)
ISSUE_DAYS = 365  # invoices are issued over one year

# Share of all messages per type; customer upserts are at least one per customer.
MIX: dict[str, float] = {
    "customer.upserted": 0.05,
    "invoice.issued": 0.40,
    "payment.received": 0.35,
    "credit_note.issued": 0.035,
    "invoice.adjusted": 0.035,
    "invoice.cancelled": 0.02,
    "invoice.written_off": 0.015,
    "dispute.opened": 0.03,
    "dispute.resolved": 0.025,
    "payment.reversed": 0.01,
    "duplicate": 0.005,
    "invalid": 0.0001,
}

_TOPIC_OF = {
    "customer.upserted": CUSTOMERS_TOPIC,
    "invoice.issued": INVOICES_TOPIC,
    "invoice.adjusted": INVOICES_TOPIC,
    "invoice.cancelled": INVOICES_TOPIC,
    "invoice.written_off": INVOICES_TOPIC,
    "credit_note.issued": INVOICES_TOPIC,
    "payment.received": PAYMENTS_TOPIC,
    "payment.reversed": PAYMENTS_TOPIC,
    "dispute.opened": DISPUTES_TOPIC,
    "dispute.resolved": DISPUTES_TOPIC,
    "prepayment.requested": INVOICES_TOPIC,
    "prepayment.cancelled": INVOICES_TOPIC,
    "payment.refunded": PAYMENTS_TOPIC,
}

# Advance-receipt traffic, per prepayment request (see the module's docstring): each group's
# share of the requests and the messages it counts towards ``advance`` (the order's invoice
# and a deposit's balance payment count among the ordinary invoices and payments).
ADVANCE_GROUPS: dict[str, float] = {
    "ordered": 0.55,  # request + tagged payment (2)
    "held": 0.25,  # request + tagged payment (2), + a refund for REFUNDED of them (3)
    "cancelled": 0.10,  # request + cancellation (2), + a tagged payment before for PAID of them (3)
    "unpaid": 0.10,  # request (1)
}
ADVANCE_REFUNDED = 0.6  # of the held requests
ADVANCE_CANCELLED_PAID = 0.5  # of the cancelled requests
ADVANCE_EARLY = 0.15  # tagged payments dated before their request
ADVANCE_FULL = 0.4  # ordered requests for the whole invoice (the others: a deposit of 20-50%)
ADVANCE_KINDS = ("prepayment.requested", "prepayment.cancelled", "payment.refunded")

# Payment habits (``habits=True``): each customer's share, and how it pays (``_Builder._habit_day``).
HABITS: dict[str, float] = {
    "prompt": 0.40,  # on or before the due date, now and then a few days late
    "late": 0.25,  # habitually late by its own number of days (10-45), give or take a week
    "seasonal": 0.15,  # on time, but 20-50 days late on what falls due in July, August or December
    "turning": 0.10,  # prompt until its own turning day, then later and later (a customer turning bad)
    "erratic": 0.10,  # the habit-less mix: early, a little late or very late at random
}
_SEASON = (7, 8, 12)  # the months a seasonal payer's invoices fall due late

_COUNTRIES = ("DE", "FR", "NL", "IT", "ES", "US", "GB", "JP", "PL", "SE")
_REGIONS = {"DE": "dach", "FR": "west", "NL": "benelux", "IT": "south", "ES": "south", "US": "na",
            "GB": "uk", "JP": "apac", "PL": "east", "SE": "nordics"}
_SEGMENTS = ("enterprise", "mid-market", "smb", "public")
_REASONS_ADJUST = ("price correction", "quantity correction", "freight added", "rebate")
_REASONS_DISPUTE = ("damaged goods", "short delivery", "price dispute", "not ordered")


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message of the book."""

    topic: str
    key: bytes
    value: bytes
    kind: str  # the CloudEvents type, "duplicate" or "invalid"


@dataclass(slots=True)
class Book:
    messages: list[Message]
    customers: int
    seed: int
    advance: float = 0.0  # the share of advance-receipt traffic asked for
    tagged: int = 0  # payment.received messages tagged with a prepayment request
    counts: Counter[str] = field(default_factory=Counter)  # per kind
    per_topic: Counter[str] = field(default_factory=Counter)

    @property
    def bytes(self) -> int:
        return sum(len(m.value) for m in self.messages)


def _money(minor: int, digits: int) -> str:
    if digits == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


@dataclass(slots=True)
class _Customer:
    index: int
    customer_id: str
    currency: str
    digits: int
    country: str
    segment: str
    net_days: int
    invoices: list[_Invoice] = field(default_factory=list)
    payments: int = 0
    credit_notes: int = 0
    disputes: int = 0
    requests: int = 0  # prepayment requests
    # has an invoice to write off: gets no unallocated money, which would pay that invoice
    # first (oldest due) and make the write-off exceed its open amount
    protected: bool = False
    habit: str = ""  # a key of HABITS (habits=True), else ""
    lateness: int = 0  # a late payer's usual days late; a turning one's turning day


@dataclass(slots=True)
class _Invoice:
    invoice_id: str
    customer: _Customer
    amount: int  # minor units
    issue_day: int
    due_day: int
    discount: bool
    busy: bool = False  # cancelled, written off or adjusted: kept apart from the other changes
    paid: int = 0
    order_id: str | None = None  # an order paid in advance (attributes.order_id)


@dataclass(slots=True)
class _Request:
    """A prepayment request planned (before the invoices are issued: an order's is marked)."""

    group: str  # a key of ADVANCE_GROUPS
    customer: _Customer
    request_id: str
    order_id: str | None
    invoice: _Invoice | None = None  # the order's invoice (group "ordered")
    extra: bool = False  # held: refunded; cancelled: paid before


class _Builder:
    def __init__(self, customers: int, events: int, seed: int, advance: float = 0.0,
                 habits: bool = False, issue_days: int = ISSUE_DAYS) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        if not 0.0 <= advance <= 0.5:
            raise ValueError("advance must be a share between 0 and 0.5")
        self.advance = advance
        self.issue_days = issue_days
        self.tagged = 0
        self.rng = random.Random(seed)
        # (a generator of its own: without habits the book draws exactly as before they existed)
        self.habits = random.Random(f"habits-{seed}") if habits else None
        self.customers_n = customers
        self.events_n = events
        self.seed = seed
        self.seq = 0
        # (topic, day, seq, kind, key, value); sorted by (day, seq) per topic at the end
        self.items: list[tuple[str, int, int, str, bytes, bytes]] = []
        self.counts: Counter[str] = Counter()

    # ---------------------------------------------------------------- plumbing

    def emit(self, kind: str, day: int, customer: _Customer, data: dict[str, Any]) -> bytes:
        self.seq += 1
        when = EPOCH + timedelta(days=day)
        envelope = {
            "specversion": "1.0",
            "id": f"bench-{self.seed}-{self.seq:08d}",
            "source": SOURCE,
            "type": kind,
            "time": f"{when.isoformat()}T09:{self.seq % 60:02d}:00Z",
            "subject": customer.customer_id,
            "datacontenttype": "application/json",
            "data": {"customer_id": customer.customer_id, **data},
        }
        value = orjson.dumps(envelope)
        key = customer.customer_id.encode()
        self.items.append((_TOPIC_OF[kind], day, self.seq, kind, key, value))
        self.counts[kind] += 1
        return value

    def day(self, d: int) -> str:
        return (EPOCH + timedelta(days=d)).isoformat()

    def quota(self, kind: str) -> int:
        # (times exactly 1.0 without advance traffic: the very same quotas as before it)
        return int(self.events_n * MIX[kind] * (1.0 - self.advance))

    # ---------------------------------------------------------------- the book

    def build(self) -> Book:
        rng = self.rng
        upserts = max(self.customers_n, self.quota("customer.upserted"))
        reserved = {k: self.quota(k) for k in MIX if k not in ("customer.upserted", "invoice.issued")}
        reserved["invalid"] = max(1, reserved["invalid"])
        advance_n = int(self.events_n * self.advance)
        invoices_n = self.events_n - upserts - sum(reserved.values()) - advance_n
        if invoices_n < self.customers_n:
            raise ValueError(
                f"{self.events_n} events are too few for {self.customers_n} customers "
                "(each needs an upsert and an invoice); use at least 20 events per customer"
            )
        customers = [self._customer(i) for i in range(self.customers_n)]
        for customer in customers:
            self._upsert(customer, day=0, first=True)
        for _ in range(upserts - self.customers_n):
            self._upsert(rng.choice(customers), day=rng.randrange(1, self.issue_days + 60), first=False)

        invoices = self._invoices(customers, invoices_n)
        payments_n = reserved["payment.received"]
        reversals_n = reserved["payment.reversed"]
        # the invoices that get special treatment are drawn first and kept out of payments
        pool = invoices[:]
        rng.shuffle(pool)
        cancelled = self._take(pool, reserved["invoice.cancelled"])
        written_off = self._take(pool, reserved["invoice.written_off"])
        adjusted = self._take(pool, reserved["invoice.adjusted"])
        for invoice in written_off:
            invoice.customer.protected = True
        requests: list[_Request] = []
        if advance_n:  # (draws nothing from rng without: the book stays as it was)
            requests = self._plan_advance(advance_n, pool, customers)
        for invoice in invoices:  # issued once the orders' invoices are known
            self._issue(invoice)
        for invoice in cancelled:
            day = invoice.issue_day + rng.randrange(1, 40)
            self.emit("invoice.cancelled", day, invoice.customer, {
                "invoice_id": invoice.invoice_id, "effective_date": self.day(day),
                "reason": "order cancelled",
            })
        for invoice in written_off:
            invoice.customer.protected = True
            self._write_off(invoice)
        for invoice in adjusted:
            self._adjust(invoice)
        balances = self._advance(requests) if requests else 0
        payments = self._payments(pool + adjusted, payments_n - balances)
        self._reversals(payments, reversals_n)
        self._credit_notes(customers, reserved["credit_note.issued"])
        self._disputes(invoices, reserved["dispute.opened"], reserved["dispute.resolved"])
        self._duplicates(reserved["duplicate"])
        self._invalid(customers, reserved["invalid"])
        return self._assemble()

    @staticmethod
    def _take(pool: list[_Invoice], n: int) -> list[_Invoice]:
        taken, pool[:] = pool[:n], pool[n:]
        for invoice in taken:
            invoice.busy = True
        return taken

    def _customer(self, index: int) -> _Customer:
        rng = self.rng
        country = _COUNTRIES[index % len(_COUNTRIES)] if rng.random() < 0.9 else rng.choice(_COUNTRIES)
        currency = {"US": "USD", "JP": "JPY"}.get(country, "EUR")
        return _Customer(
            index=index, customer_id=f"CUST-{index:05d}", currency=currency,
            digits=0 if currency == "JPY" else 2, country=country,
            segment=rng.choice(_SEGMENTS), net_days=rng.choice((14, 30, 30, 30, 45, 60)),
        )

    def _upsert(self, customer: _Customer, day: int, first: bool) -> None:
        rng = self.rng
        limit = rng.choice((5_000, 10_000, 25_000, 50_000, 100_000, 250_000))
        data: dict[str, Any] = {
            "name": f"Customer {customer.index} {customer.segment.title()} Ltd",
            "country": customer.country, "segment": customer.segment,
            "payment_terms_days": customer.net_days,
            "credit_limit": {"currency": customer.currency,
                             "amount": _money(limit * (1 if customer.digits == 0 else 100), customer.digits)},
            "dunning_policy": "standard" if customer.segment != "public" else "gentle",
            "contacts": [{"role": "ap", "email": f"ap@customer{customer.index}.example"}],
        }
        if not first:
            data["do_not_dun"] = rng.random() < 0.1
        self.emit("customer.upserted", day, customer, data)

    def _invoices(self, customers: list[_Customer], n: int) -> list[_Invoice]:
        rng = self.rng
        # heavy tail: lognormal weights; everyone has at least one invoice
        weights = [rng.lognormvariate(0.0, 1.1) for _ in customers]
        total = sum(weights)
        extra = n - len(customers)
        counts = [1 + int(extra * w / total) for w in weights]
        short = n - sum(counts)
        for i in rng.choices(range(len(customers)), weights=weights, k=short):
            counts[i] += 1
        invoices: list[_Invoice] = []
        for customer, count in zip(customers, counts, strict=True):
            for number in range(count):
                issue_day = rng.randrange(0, self.issue_days)
                scale = 1 if customer.digits == 0 else 100
                units = int(rng.lognormvariate(7.0, 1.0)) + 10  # median ~1,100, long tail
                if customer.currency == "JPY":
                    units *= 150
                invoice = _Invoice(
                    invoice_id=f"INV-{customer.index:05d}-{number:04d}", customer=customer,
                    amount=units * scale + (rng.randrange(100) if scale == 100 else 0),
                    issue_day=issue_day, due_day=issue_day + customer.net_days,
                    discount=rng.random() < 0.15,
                )
                customer.invoices.append(invoice)
                invoices.append(invoice)
        return invoices

    def _issue(self, invoice: _Invoice) -> None:
        customer = invoice.customer
        terms: dict[str, Any] = {"net_days": customer.net_days}
        if invoice.discount:
            terms = {"net_days": 30, "discount_percent": "2", "discount_days": 10}
            invoice.due_day = invoice.issue_day + 30
        attributes = {"country": customer.country, "region": _REGIONS[customer.country],
                      "salesperson": f"rep-{customer.index % 37:02d}"}
        if invoice.order_id is not None:
            attributes["order_id"] = invoice.order_id
        self.emit("invoice.issued", invoice.issue_day, customer, {
            "invoice_id": invoice.invoice_id, "issue_date": self.day(invoice.issue_day),
            "due_date": self.day(invoice.due_day), "currency": customer.currency,
            "amount": _money(invoice.amount, customer.digits), "terms": terms,
            "reference": f"SO-{customer.index:05d}-{invoice.invoice_id[-4:]}",
            "attributes": attributes,
        })

    def _write_off(self, invoice: _Invoice) -> None:
        rng = self.rng
        # a part of the amount: unapplied cash may already have paid some of it
        amount = max(1, invoice.amount * rng.randrange(20, 60) // 100)
        day = invoice.due_day + rng.randrange(60, 200)
        self.emit("invoice.written_off", day, invoice.customer, {
            "invoice_id": invoice.invoice_id, "amount": _money(amount, invoice.customer.digits),
            "effective_date": self.day(day), "reason": "uncollectable",
        })

    def _adjust(self, invoice: _Invoice) -> None:
        rng = self.rng
        # A protected customer's (see _Customer) only goes down: paid at an amount raised, the
        # payment would leave unapplied cash if consumed before the raise (topics carry no
        # order between them), and that cash would pay the invoice to write off first.
        factor = rng.choice((90, 95, 98) if invoice.customer.protected else (90, 95, 98, 102, 105, 110))
        new_amount = max(1, invoice.amount * factor // 100)
        day = invoice.issue_day + rng.randrange(0, 10)
        self.emit("invoice.adjusted", day, invoice.customer, {
            "invoice_id": invoice.invoice_id, "new_amount": _money(new_amount, invoice.customer.digits),
            "effective_date": self.day(day), "reason": rng.choice(_REASONS_ADJUST),
        })
        invoice.amount = new_amount

    def _payment(self, customer: _Customer, day: int, amount: int,
                 allocations: list[tuple[_Invoice, int]] | None,
                 request_id: str | None = None) -> tuple[_Customer, int, str]:
        customer.payments += 1
        payment_id = f"PAY-{customer.index:05d}-{customer.payments:05d}"
        data: dict[str, Any] = {
            "payment_id": payment_id, "currency": customer.currency,
            "amount": _money(amount, customer.digits), "received_date": self.day(day),
            "method": self.rng.choice(("sepa", "wire", "card", "check")),
            "reference": f"BANK-{self.seq:09d}",
        }
        if allocations:
            data["allocations"] = [
                {"invoice_id": invoice.invoice_id, "amount": _money(part, customer.digits)}
                for invoice, part in allocations
            ]
        if request_id is not None:
            data["prepayment_request_id"] = request_id
            self.tagged += 1
        self.emit("payment.received", day, customer, data)
        return customer, day, payment_id

    def _pay_day(self, invoice: _Invoice) -> int:
        if self.habits is not None:
            return self._habit_day(invoice, self.habits)
        rng = self.rng
        late = rng.random()
        if late < 0.55:
            return invoice.due_day - rng.randrange(0, max(1, invoice.customer.net_days))
        if late < 0.85:
            return invoice.due_day + rng.randrange(1, 30)
        return invoice.due_day + rng.randrange(30, 120)

    @staticmethod
    def _habit_day(invoice: _Invoice, rng: random.Random) -> int:
        """The pay day of ``invoice`` by its customer's habit (drawn on first use)."""
        customer = invoice.customer
        if not customer.habit:
            customer.habit = rng.choices(list(HABITS), weights=list(HABITS.values()))[0]
            if customer.habit == "late":
                customer.lateness = rng.randrange(10, 46)
            elif customer.habit == "turning":
                customer.lateness = rng.randrange(120, 300)
        due, habit = invoice.due_day, customer.habit
        if habit == "prompt":
            return due + rng.randrange(1, 8) if rng.random() < 0.1 else due - rng.randrange(0, 6)
        if habit == "late":
            return due if rng.random() < 0.1 else due + max(1, customer.lateness + rng.randrange(-7, 8))
        if habit == "seasonal":
            month = (EPOCH + timedelta(days=due)).month
            return due + rng.randrange(20, 51) if month in _SEASON else due - rng.randrange(0, 4)
        if habit == "turning":
            if due < customer.lateness:
                return due - rng.randrange(0, 4)
            return due + (due - customer.lateness) // 4 + rng.randrange(0, 10)
        late = rng.random()  # erratic
        if late < 0.55:
            return due - rng.randrange(0, max(1, customer.net_days))
        if late < 0.85:
            return due + rng.randrange(1, 30)
        return due + rng.randrange(30, 120)

    def _payments(self, invoices: list[_Invoice], n: int) -> list[tuple[_Customer, int, str]]:
        rng = self.rng
        made: list[tuple[_Customer, int, str]] = []
        queue = invoices[:]
        rng.shuffle(queue)
        i = 0
        while len(made) < n:
            if i >= len(queue):  # every invoice has had a payment: on-account money fills up
                invoice = rng.choice(invoices)
                customer = invoice.customer
                if customer.protected:
                    continue
                made.append(self._payment(customer, self._pay_day(invoice),
                                          invoice.amount // 4 + 1, None))
                continue
            invoice = queue[i]
            i += 1
            customer = invoice.customer
            scale = 1 if customer.digits == 0 else 100
            kind = rng.random()
            if customer.protected and kind >= 0.50:
                kind = rng.uniform(0.63, 0.75)  # allocated partial payments only
            if kind < 0.50:  # in full, allocated
                made.append(self._payment(customer, self._pay_day(invoice), invoice.amount,
                                          [(invoice, invoice.amount)]))
            elif kind < 0.63:  # in full, no allocation: oldest due first
                made.append(self._payment(customer, self._pay_day(invoice), invoice.amount, None))
            elif kind < 0.75:  # partial, then (mostly) the rest
                first = invoice.amount * rng.randrange(30, 80) // 100
                day = self._pay_day(invoice)
                made.append(self._payment(customer, day, first, [(invoice, first)]))
                if len(made) < n and rng.random() < 0.8:
                    rest = invoice.amount - first
                    made.append(self._payment(customer, day + rng.randrange(5, 45), rest,
                                              [(invoice, rest)]))
            elif kind < 0.81:  # over: the excess stays as unapplied cash
                over = invoice.amount + rng.randrange(1, 500) * scale
                made.append(self._payment(customer, self._pay_day(invoice), over,
                                          [(invoice, invoice.amount)]))
            elif kind < 0.89 and invoice.discount:  # early, with the 2% cash discount
                net = invoice.amount - invoice.amount * 2 // 100
                day = invoice.issue_day + rng.randrange(0, 10)
                made.append(self._payment(customer, day, net, [(invoice, net)]))
            elif kind < 0.96 and len(customer.invoices) > 2:  # several invoices at once
                others = rng.sample(customer.invoices, k=min(3, len(customer.invoices)))
                parts = [(o, o.amount) for o in others if not o.busy] or [(invoice, invoice.amount)]
                total = sum(p for _, p in parts)
                day = max(self._pay_day(o) for o, _ in parts)
                made.append(self._payment(customer, day, total, parts))
            else:  # on account (a prepayment or an unexplained receipt)
                day = invoice.issue_day - rng.randrange(0, 20)
                made.append(self._payment(customer, max(0, day), invoice.amount // 2 + 1, None))
        return made

    # ---------------------------------------------------------------- advance receipts

    def _plan_advance(self, n: int, pool: list[_Invoice], customers: list[_Customer]) -> list[_Request]:
        """Requests whose messages come to exactly ``n``; the ordered ones' invoices are taken
        out of ``pool`` (from customers without a write-off) and get their order id."""
        rng = self.rng
        shares = list(ADVANCE_GROUPS.values())
        groups: list[tuple[str, bool]] = []
        left = n
        while left > 0:
            group = rng.choices(list(ADVANCE_GROUPS), weights=shares)[0]
            extra = False
            if group == "held":
                extra = rng.random() < ADVANCE_REFUNDED
            elif group == "cancelled":
                extra = rng.random() < ADVANCE_CANCELLED_PAID
            size = {"ordered": 2, "held": 2, "cancelled": 2, "unpaid": 1}[group] + extra
            if size > left:
                group, extra, size = "unpaid", False, 1
            groups.append((group, extra))
            left -= size
        ordered = sum(1 for group, _ in groups if group == "ordered")
        eligible = [invoice for invoice in pool if not invoice.customer.protected]
        eligible = eligible[:min(ordered, len(eligible) // 2)]  # leave some for credit notes, disputes
        taken = {id(invoice) for invoice in eligible}
        pool[:] = [invoice for invoice in pool if id(invoice) not in taken]
        orders = iter(eligible)
        free = [customer for customer in customers if not customer.protected]
        requests: list[_Request] = []
        for group, extra in groups:
            invoice = next(orders, None) if group == "ordered" else None
            if group == "ordered" and invoice is None:  # too few invoices: the order comes later
                group = "held"
            customer = invoice.customer if invoice is not None else rng.choice(free or customers)
            if group == "cancelled" and customer.protected:
                extra = False  # released cash could pay the invoice to be written off
            customer.requests += 1
            request_id = f"PRQ-{customer.index:05d}-{customer.requests:04d}"
            has_order = group in ("ordered", "cancelled") or rng.random() < 0.7
            order_id = f"ORD-{customer.index:05d}-{customer.requests:04d}" if has_order else None
            if invoice is not None:
                invoice.busy = True
                invoice.order_id = order_id
            requests.append(_Request(group, customer, request_id, order_id, invoice, extra))
        return requests

    def _advance(self, requests: list[_Request]) -> int:
        """The planned requests' messages; returns the balance payments made (ordinary ones)."""
        rng = self.rng
        balances = 0
        budget = self.quota("payment.received") // 2  # balance payments: at most half the payments
        for request in requests:
            customer, invoice = request.customer, request.invoice
            if invoice is not None:
                day = max(0, invoice.issue_day - rng.randrange(7, 45))
                if rng.random() < ADVANCE_FULL or balances >= budget:
                    amount = invoice.amount
                else:
                    amount = max(1, invoice.amount * rng.randrange(20, 51) // 100)
            else:
                day = rng.randrange(0, self.issue_days)
                amount = self._advance_amount(customer)
            self.emit("prepayment.requested", day, customer, {
                "request_id": request.request_id, "currency": customer.currency,
                "amount": _money(amount, customer.digits), "requested_date": self.day(day),
                "due_date": self.day(day + rng.randrange(7, 22)),
                **({"order_id": request.order_id} if request.order_id else {}),
            })
            if request.group == "unpaid" or (request.group == "cancelled" and not request.extra):
                paid_on = None
            else:
                paid_on = self._tagged_day(day)
                if invoice is not None:
                    paid_on = min(paid_on, invoice.issue_day)
                _, _, payment_id = self._payment(customer, paid_on, amount, None, request.request_id)
            if request.group == "cancelled":
                when = day + rng.randrange(1, 60)
                self.emit("prepayment.cancelled", when, customer, {
                    "request_id": request.request_id, "effective_date": self.day(when),
                    "reason": rng.choice(("order cancelled", "order changed", "paid on delivery")),
                })
            elif request.group == "held" and request.extra and paid_on is not None:
                # held to the end (never withdrawn, no invoice of its order): nothing else can
                # take this cash, so a refund of at most all of it is never refused
                when = paid_on + rng.randrange(1, 60)
                part = max(1, amount * rng.randrange(10, 101) // 100)
                self.emit("payment.refunded", when, customer, {
                    "refund_id": f"RFD-{request.request_id[4:]}", "currency": customer.currency,
                    "amount": _money(part, customer.digits), "refund_date": self.day(when),
                    "payment_id": payment_id,
                })
            if invoice is not None and amount < invoice.amount:  # a deposit: the balance, later
                rest = invoice.amount - amount
                self._payment(customer, max(invoice.issue_day, self._pay_day(invoice)), rest,
                              [(invoice, rest)])
                balances += 1
        return balances

    def _tagged_day(self, request_day: int) -> int:
        rng = self.rng
        if rng.random() < ADVANCE_EARLY:  # the cash came first; the request follows
            return max(0, request_day - rng.randrange(1, 6))
        return request_day + rng.randrange(0, 14)

    def _advance_amount(self, customer: _Customer) -> int:
        rng = self.rng
        units = int(rng.lognormvariate(6.5, 1.0)) + 10
        if customer.currency == "JPY":
            return units * 150
        return units * 100 + rng.randrange(100)

    def _reversals(self, payments: list[tuple[_Customer, int, str]], n: int) -> None:
        rng = self.rng
        for customer, day, payment_id in rng.sample(payments, k=min(n, len(payments))):
            when = day + rng.randrange(1, 15)
            self.emit("payment.reversed", when, customer, {
                "payment_id": payment_id, "effective_date": self.day(when),
                "reason": rng.choice(("returned direct debit", "bounced check", "chargeback")),
            })

    def _credit_notes(self, customers: list[_Customer], n: int) -> None:
        rng = self.rng
        emitted = 0
        if n and all(c.protected or all(i.busy for i in c.invoices) for c in customers):
            raise ValueError("no invoice can take a credit note: use more events per customer")
        while emitted < n:
            customer = rng.choice(customers)
            invoice = rng.choice(customer.invoices)
            if customer.protected or invoice.busy:
                continue  # no credits for these (see _Customer.protected)
            customer.credit_notes += 1
            amount = max(1, invoice.amount * rng.randrange(5, 30) // 100)
            day = invoice.issue_day + rng.randrange(1, 45)
            data: dict[str, Any] = {
                "credit_note_id": f"CN-{customer.index:05d}-{customer.credit_notes:04d}",
                "currency": customer.currency, "amount": _money(amount, customer.digits),
                "issue_date": self.day(day), "reason": "returned goods",
            }
            if rng.random() < 0.7:
                data["invoice_id"] = invoice.invoice_id
            self.emit("credit_note.issued", day, customer, data)
            emitted += 1

    def _disputes(self, invoices: list[_Invoice], opened: int, resolved: int) -> None:
        rng = self.rng
        candidates = [i for i in invoices if not i.busy]
        chosen = rng.sample(candidates, k=min(opened, len(candidates)))
        to_resolve = set(range(min(resolved, len(chosen))))
        for number, invoice in enumerate(chosen):
            customer = invoice.customer
            customer.disputes += 1
            dispute_id = f"DSP-{customer.index:05d}-{customer.disputes:04d}"
            amount = max(1, invoice.amount * rng.randrange(10, 100) // 100)
            day = invoice.issue_day + rng.randrange(3, 40)
            self.emit("dispute.opened", day, customer, {
                "dispute_id": dispute_id, "invoice_id": invoice.invoice_id,
                "amount": _money(amount, customer.digits), "opened_date": self.day(day),
                "reason": rng.choice(_REASONS_DISPUTE),
            })
            if number not in to_resolve:
                continue
            when = day + rng.randrange(5, 60)
            data: dict[str, Any] = {
                "dispute_id": dispute_id, "invoice_id": invoice.invoice_id,
                "resolved_date": self.day(when), "outcome": "rejected",
            }
            if rng.random() < 0.5:
                data["outcome"] = "accepted"
                if rng.random() < 0.6 and not customer.protected:
                    data["credited_amount"] = _money(max(1, amount // 2), customer.digits)
            self.emit("dispute.resolved", when, customer, data)

    def _duplicates(self, n: int) -> None:
        rng = self.rng
        originals = [item for item in self.items if item[3] != "customer.upserted"]
        for topic, day, _seq, _kind, key, value in rng.sample(originals, k=min(n, len(originals))):
            self.seq += 1
            self.items.append((topic, day + rng.randrange(0, 30), self.seq, "duplicate", key, value))
            self.counts["duplicate"] += 1

    def _invalid(self, customers: list[_Customer], n: int) -> None:
        rng = self.rng
        for number in range(n):
            customer = rng.choice(customers)
            day = rng.randrange(0, self.issue_days)
            if number % 2 == 0:
                value = b'{"specversion": "1.0", "id": "broken'  # truncated: not JSON
                self.seq += 1
                self.items.append((PAYMENTS_TOPIC, day, self.seq, "invalid",
                                   customer.customer_id.encode(), value))
                self.counts["invalid"] += 1
            else:  # a schema violation: a negative amount
                self.emit("payment.received", day, customer, {
                    "payment_id": f"PAY-BAD-{number}", "currency": customer.currency,
                    "amount": "-10.00" if customer.digits else "-10", "received_date": self.day(day),
                })
                self.counts["payment.received"] -= 1
                self.counts["invalid"] += 1
                topic, d, seq, _kind, key, value = self.items[-1]
                self.items[-1] = (topic, d, seq, "invalid", key, value)

    def _assemble(self) -> Book:
        items = self.items
        # publish order: by business date, then generation order (dependents come later)
        items.sort(key=lambda item: (item[1], item[2]))
        messages = [Message(topic, key, value, kind) for topic, _day, _seq, kind, key, value in items]
        if len(messages) != self.events_n:
            raise AssertionError(f"generated {len(messages)} messages, wanted {self.events_n}")
        book = Book(messages=messages, customers=self.customers_n, seed=self.seed,
                    advance=self.advance, tagged=self.tagged)
        book.counts.update(m.kind for m in messages)
        book.per_topic.update(m.topic for m in messages)
        return book


def generate_book(customers: int = 10_000, events: int = 300_000, seed: int = 7,
                  advance: float = 0.0, habits: bool = False, issue_days: int = ISSUE_DAYS) -> Book:
    """Exactly ``events`` messages for ``customers`` customers, deterministic for ``seed``;
    ``advance``: the share of them that is advance-receipt traffic (prepayment requests and
    their cancellations, tagged payments, refunds); ``habits``: customers pay by their habits
    (``HABITS``) rather than all alike; ``issue_days``: the days from ``EPOCH`` over which
    invoices are issued (a year unless told: two let a model learn from a season seen before)."""
    return _Builder(customers, events, seed, advance, habits, issue_days).build()


def advance_messages(book: Book) -> int:
    """The book's advance-receipt messages: requests, cancellations, refunds, tagged payments."""
    return sum(book.counts[kind] for kind in ADVANCE_KINDS) + book.tagged


def describe(book: Book) -> str:
    """A one-paragraph summary of the book's mix."""
    total = len(book.messages)
    parts = ", ".join(f"{kind} {count} ({count / total:.1%})" for kind, count in book.counts.most_common())
    topics = ", ".join(f"{topic} {count}" for topic, count in sorted(book.per_topic.items()))
    advance = ""
    if book.advance:
        share = advance_messages(book) / total
        advance = (f"; advance receipts {advance_messages(book)} ({share:.1%}, of which "
                   f"{book.tagged} tagged payments)")
    return (f"{total} messages for {book.customers} customers, {book.bytes / total:.0f} bytes on "
            f"average; {parts}{advance}; per topic: {topics}")


if __name__ == "__main__":  # pragma: no cover - a quick look at the mix
    import sys
    import time

    started = time.perf_counter()
    sizes = [int(a) for a in sys.argv[1:3]]  # [customers [events [advance]]]
    sample = generate_book(sizes[0] if sizes else 10_000, sizes[1] if sizes[1:] else 300_000,
                           advance=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    print(describe(sample))
    print(f"generated in {time.perf_counter() - started:.1f}s")
