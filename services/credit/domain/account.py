"""The credit account: one customer's limits, exposure, risk grade, holds and credit checks.

Ledger facts (``ar.ledger.events``, and ``customer.upserted`` from ``ar.customers``) come
in through ``observe``; commands decide: ``check`` answers a credit check and reserves an
approved order, ``set_limit``, ``review`` (the daily run for a date), ``place_manual_hold``
and ``release_hold``. After every change the hold rules are evaluated and a hold placed,
changed or released as they say. The ``@event`` methods only record what was observed or
decided, so rebuilding from history never re-decides anything; payloads are JSON-native
(money as decimal strings, dates ISO) and carry the figures behind each decision.

Exposure per currency = open receivables (disputed amounts included) + open-order
reservations, both kept as running totals so a credit check costs O(1).

Choices where the contract is silent:

- A check answers ``hold`` while any hold is active (its reasons are the holds' codes),
  ``review`` when the currency has no limit (``no_limit``) or exposure + amount would exceed
  it (``limit_exceeded``), else ``approve``, which reserves the amount for
  ``rules.reservation_days`` days from the check's date. ``exposure``, ``limit`` and
  ``available_credit`` (limit - exposure, negative when over) are the figures the decision
  was made on, before the reservation. Every answer is final for its ``order_id``: checked
  again it is returned as it was (a different amount or currency is refused), but for one
  waiting for a deposit (``deposit_required``), decided again once the deposit awaited changed.
- An invoice whose ``attributes.order_id`` (else ``reference``) names a reserved order in
  the same currency consumes the reservation up to the invoice amount; what is left (a part
  invoice) stays reserved until further invoices or its expiry.
- At most one automatic hold is active; its ``reasons`` follow the rules as facts come in
  (recorded as a change of reasons) and it is released (``released_by: "auto"``) when none
  holds any more. A user releasing an automatic hold overrides its reasons: they place no
  hold again until they have stopped holding once (then they may again). Manual holds are
  released only by a user; placing one while one is active returns it unchanged.
- Time passes only through the review (``review(as_of)``): it expires limits and
  reservations, marks invoices past the overdue rule's days, and records the risk grade.
  Facts and checks never move time; a review dated before the last recorded one does
  nothing. A review that changes nothing records nothing.
- Limits from the ERP (``credit_limit`` of the customer profile) are taken when the ERP's
  value changes, so a profile re-sent for another reason does not undo a limit set over
  REST; a profile without ``credit_limit`` leaves the limit alone.
- Securities (``securities.py``) lower the exposure a check and the limit rule judge by their
  cover on the day judged; outside ratings (``rating.reported``) are a factor of the score;
  the ledger's prepayment requests make a check for their order ask for the deposit; early
  warnings (``warnings.py``) are judged with the hold rules and at every review.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.credit.domain.errors import (
    ConflictingCheck,
    ConflictingSecurity,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    UnknownHold,
    UnknownSecurity,
    UnknownWarning,
)
from services.credit.domain.risk import InvoiceHistory, Prediction, Rating, RiskAssessment, RiskModel, assess
from services.credit.domain.rules import CreditRules, default_rules
from services.credit.domain.securities import EXPIRY_NOTICE_DAYS, Security, cover
from services.credit.domain.warnings import Ending, SettledIndex, Situation, Utilisation, evidence
from shared.erp_events import RatingFields, RatingReported
from shared.ledger_feed import (
    CommitmentBroken,
    Fact,
    InvoiceOpened,
    PrepaymentAsked,
    PrepaymentPaid,
    PrepaymentWithdrawn,
    RefundIssued,
)
from shared.money import ZERO, check_minor_digits, parse_amount, to_text
from shared.open_items import MirrorChange, OpenItem, OpenItems

ACCOUNT_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:credit:customer")
HOLD_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:credit:hold")
WARNING_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:credit:warning")

# A customer's unchanged predicted lateness is recorded again after this many days: a prediction
# is usable for ``RiskModel.predictions.max_age_days`` (14 by default).
PREDICTION_REFRESH_DAYS = 7

# The order reasons are listed in, on holds and in check answers.
REASON_ORDER = ("limit_exceeded", "overdue_days", "risk_grade", "early_warning", "manual", "no_limit",
                "deposit_required")


@lru_cache(maxsize=1 << 16)  # a uuid5 costs ≈ 3.5 µs, and every credit check looks its account up
def credit_account_id(customer_id: str) -> UUID:
    """Deterministic aggregate id: the credit account of customer X is found without an index."""
    return uuid5(ACCOUNT_NAMESPACE, customer_id)


def credit_warning_id(customer_id: str, number: int) -> str:
    """The id of the customer's ``number``-th warning (1-based): the same on every replay."""
    return str(uuid5(WARNING_NAMESPACE, f"{customer_id}\x1f{number}"))


def credit_hold_id(customer_id: str, number: int) -> str:
    """The id of the customer's ``number``-th hold (1-based): the same on every replay."""
    return str(uuid5(HOLD_NAMESPACE, f"{customer_id}\x1f{number}"))


@cache
def _default_rules() -> CreditRules:
    return default_rules()


def _ordered(reasons: Iterable[str]) -> list[str]:
    return sorted(set(reasons), key=REASON_ORDER.index)


@dataclass(slots=True)
class Limit:
    currency: str
    amount: Decimal
    set_by: str
    source: str  # "api" or "erp"
    expires_on: date | None
    review_on: date | None
    review_due: bool = False


@dataclass(slots=True)
class Reservation:
    """An approved order's amount, counted in exposure until invoiced or expired."""

    order_id: str
    currency: str
    amount: Decimal
    remaining: Decimal
    reserved_on: date
    expires_on: date  # last day it counts


@dataclass(slots=True)
class Deposit:
    """A prepayment the ledger asked for an order (``ledger.prepayment_requested``) and what
    came for it; ``amount`` None while only a payment for it is known."""

    order_id: str | None = None
    currency: str | None = None
    amount: Decimal | None = None
    received: dict[str, Decimal] = field(default_factory=dict)  # payment id -> amount
    withdrawn: bool = False

    @property
    def awaited(self) -> Decimal:
        if self.amount is None or self.withdrawn:
            return ZERO
        return max(ZERO, self.amount - sum(self.received.values(), ZERO))


@dataclass(slots=True)
class Hold:
    hold_id: str
    kind: str  # "automatic" or "manual"
    reasons: tuple[str, ...]
    placed_by: str  # "auto" or the user
    note: str | None
    effective_date: str | None
    status: str = "active"
    released_by: str | None = None
    release_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "kind": self.kind, "reasons": list(self.reasons),
                "placed_by": self.placed_by, "note": self.note, "effective_date": self.effective_date,
                "status": self.status, "released_by": self.released_by, "release_reason": self.release_reason}


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """What one review recorded for a customer."""

    as_of: date
    limits_expired: list[str] = field(default_factory=list)  # currencies
    limits_to_review: list[str] = field(default_factory=list)
    reservations_expired: list[str] = field(default_factory=list)  # order ids
    overdue_invoices: list[str] = field(default_factory=list)  # marked by this review
    grade_change: dict[str, Any] | None = None
    holds_placed: list[dict[str, Any]] = field(default_factory=list)
    holds_changed: list[dict[str, Any]] = field(default_factory=list)
    holds_released: list[dict[str, Any]] = field(default_factory=list)
    securities_expiring: list[str] = field(default_factory=list)  # announced by this review

    def __bool__(self) -> bool:
        return bool(self.limits_expired or self.limits_to_review or self.reservations_expired
                    or self.overdue_invoices or self.grade_change or self.holds_placed
                    or self.holds_changed or self.holds_released or self.securities_expiring)


@dataclass(slots=True)
class _Evaluation:
    placed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    released: list[dict[str, Any]] = field(default_factory=list)


def _valid_currency(currency: str) -> str:
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
        raise InvalidCommand(f"currency: {currency!r} is not an ISO 4217 code", field="currency")
    return currency


def _valid_amount(amount: object, currency: str, what: str, *, positive: bool) -> Decimal:
    try:
        value = amount if isinstance(amount, Decimal) else parse_amount(amount)
        if not value.is_finite():
            raise ValueError(f"{amount!r} is not a finite amount")
        check_minor_digits(value, currency)
    except ValueError as error:
        raise InvalidAmount(f"{what}: {error}", field=what) from None
    if value < ZERO or (positive and value == ZERO):
        raise InvalidAmount(f"{what}: must be {'positive' if positive else 'zero or more'}, got {value}",
                            field=what)
    return value


def _ratings(records: Iterable[dict[str, Any]]) -> list[Rating]:
    return [Rating(provider=r["provider"], grade=r["grade"], score=Decimal(r["score"]),
                   probability_of_default=(Decimal(r["probability_of_default"])
                                           if r.get("probability_of_default") is not None else None),
                   report_date=date.fromisoformat(r["report_date"]),
                   valid_until=date.fromisoformat(r["valid_until"]) if r.get("valid_until") else None)
            for r in records]


def _rating_record(rating: RatingFields) -> dict[str, Any]:
    """A rating's figures, JSON-native (what else its message carried left out)."""
    dumped = rating.model_dump(mode="json")
    return {name: dumped[name] for name in RatingFields.model_fields}


def _required(value: str | None, what: str) -> str:
    if not value or not value.strip():
        raise InvalidCommand(f"{what}: required for the audit trail", field=what)
    return value.strip()


class CreditAccount(Aggregate):
    """One customer's credit: the unit of consistency of checks, holds and reviews."""

    if TYPE_CHECKING:  # the event class the @event method of a check defines
        CreditChecked: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return credit_account_id(customer_id)

    @event("Opened")
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.items = OpenItems()  # the ledger's facts: invoices, disputes, receivables, unapplied cash
        self.reserved: dict[str, Decimal] = {}  # open-order reservations per currency
        self.limits: dict[str, Limit] = {}
        self.erp_limit: dict[str, str] | None = None  # the ERP's last credit_limit
        self.reservations: dict[str, Reservation] = {}  # open ones, by order id
        self.checks: dict[str, dict[str, Any]] = {}  # order id -> the answer given
        self.overdue: dict[str, int] = {}  # invoice id -> days past due when the review marked it
        self.risk: dict[str, Any] | None = None  # the assessment the last grade change recorded
        self.holds: dict[str, Hold] = {}
        self.overridden: set[str] = set()  # reasons a user released and that still hold
        self.last_review_on: date | None = None
        self.securities: dict[str, Security] = {}
        # the ledger's prepayment requests: request id -> order, currency, amount, receipts
        self.deposits: dict[str, Deposit] = {}
        self.deposit_refunds: set[str] = set()  # the refunds that took back a deposit's money
        # outside ratings: every report recorded (the audit trail), the latest per provider used
        self.ratings: dict[str, dict[str, Any]] = {}  # provider -> its latest report (by report date)
        self.rating_reports: dict[str, list[dict[str, Any]]] = {}  # provider -> every report, by date
        self.rating_keys: set[str] = set()  # the messages (source/id) taken, against redeliveries
        self.previous_grade: str | None = None  # the grade before the last change
        # the ledger's predictions of the open invoices' lateness, as recorded (by date predicted)
        self.predictions: list[dict[str, Any]] = []
        self.broken: dict[str, dict[str, str]] = {}  # "promise:P1" / "plan:PL1" -> kind, id, broken_on
        self.warnings: dict[str, dict[str, Any]] = {}  # warning id -> the warning as raised (and after)
        self.open_warnings: dict[str, str] = {}  # signal -> its open warning's id
        self.settled = SettledIndex()  # the paid invoices by settled date (the payment signals')
        # the latest business date a command of the account named (a check, a security's): a change
        # dated earlier is judged on it, not before
        self.judged_on: date | None = None

    # ----------------------------------------------------------------- queries

    @property
    def grade(self) -> str | None:
        return self.risk["grade"] if self.risk else None

    def exposure(self, currency: str) -> Decimal:
        return self.items.receivables.get(currency, ZERO) + self.reserved.get(currency, ZERO)

    def cover(self, currency: str, exposure: Decimal, day: date | None) -> Decimal:
        """What the securities cover of ``exposure`` on ``day`` (no day known: nothing)."""
        if day is None or not self.securities:
            return ZERO
        return cover(self.securities.values(), currency, exposure, day)

    def limit_amount(self, currency: str) -> Decimal | None:
        limit = self.limits.get(currency)
        return limit.amount if limit is not None else None

    def active_holds(self) -> list[Hold]:
        return [hold for hold in self.holds.values() if hold.status == "active"]

    @property
    def on_hold(self) -> bool:
        return any(hold.status == "active" for hold in self.holds.values())

    def position(self, currency: str) -> dict[str, Any]:
        """The credit figures of one currency, JSON-native."""
        limit = self.limit_amount(currency)
        exposure = self.exposure(currency)
        return {
            "currency": currency,
            "open_receivables": to_text(self.items.receivables.get(currency, ZERO), currency),
            "reserved": to_text(self.reserved.get(currency, ZERO), currency),
            "exposure": to_text(exposure, currency),
            "limit": to_text(limit, currency) if limit is not None else None,
            "available": to_text(limit - exposure, currency) if limit is not None else None,
        }

    def figures(self) -> list[dict[str, Any]]:
        """Every currency with a limit or an exposure."""
        currencies = set(self.limits) | {c for c, v in self.items.receivables.items() if v} | {
            c for c, v in self.reserved.items() if v}
        return [self.position(currency) for currency in sorted(currencies)]

    def history(self) -> list[InvoiceHistory]:
        """The invoices scoring looks at (cancelled ones left out)."""
        disputed = set(self.items.dispute_invoice.values())
        return [
            InvoiceHistory(i.invoice_id, i.issue_date, i.due_date, i.settled_date,
                           i.open_amount > ZERO, i.invoice_id in disputed)
            for i in self.items.invoices.values() if i.status != "cancelled"
        ]

    def assess(self, as_of: date, model: RiskModel) -> RiskAssessment:
        """The risk score as of a date, computed now (not recorded)."""
        return assess(self.history(), as_of, model, self.rating_inputs(as_of), self.prediction_input(as_of))

    def prediction_input(self, as_of: date) -> Prediction | None:
        """The latest prediction made on or before ``as_of`` that predicted something."""
        day = as_of.isoformat()
        for record in reversed(self.predictions):
            if record["as_of"] <= day:
                if record["days_late"] is None:
                    return None
                return Prediction(date.fromisoformat(record["as_of"]), record["model_version"],
                                  record["days_late"], record["currency"])
        return None

    def record_prediction(self, as_of: date, model_version: str,
                          outlooks: Iterable[Mapping[str, Any]]) -> bool:
        """The ledger's outlooks for the customer on ``as_of`` (``GET /predictions/customers``:
        per currency, ``predicted_days_late`` and ``expected_loss``), kept for the score's
        ``predicted_lateness``: the worst currency's days late. Recorded only when they say
        something new: other days late than the latest recorded, or that one a week old (so a
        customer whose outlook holds still keeps a usable prediction); a prediction dated
        before the latest records nothing. True when recorded."""
        rows = sorted(({"currency": o["currency"], "predicted_days_late": o["predicted_days_late"],
                        "expected_loss": str(o["expected_loss"])} for o in outlooks),
                      key=lambda row: row["currency"])
        worst = max((r for r in rows if r["predicted_days_late"] is not None),
                    key=lambda r: (r["predicted_days_late"], r["currency"]), default=None)
        days = worst["predicted_days_late"] if worst else None
        latest = self.predictions[-1] if self.predictions else None
        day = as_of.isoformat()
        if days is None and (latest is None or latest["days_late"] is None):
            return False  # nothing predicted, and nothing was before
        if latest is not None and (latest["as_of"] > day or (
                latest["days_late"] == days and (as_of - date.fromisoformat(latest["as_of"])).days
                < PREDICTION_REFRESH_DAYS)):
            return False
        self._lateness_predicted(prediction={
            "as_of": day, "model_version": model_version, "days_late": days,
            "currency": worst["currency"] if worst else None, "outlooks": rows})
        return True

    def rating_inputs(self, as_of: date) -> list[Rating]:
        """Each provider's latest report on or before ``as_of`` (a report dated later waits)."""
        return [pair[1] for pair in self.rating_pairs(as_of).values()]

    def rating_pairs(self, as_of: date) -> dict[str, tuple[Rating | None, Rating]]:
        """Per provider, (the report before, the latest) on or before ``as_of``."""
        day = as_of.isoformat()
        pairs: dict[str, tuple[Rating | None, Rating]] = {}
        for provider, reports in sorted(self.rating_reports.items()):
            usable = [r for r in reports if r["report_date"] <= day]
            if usable:
                read = _ratings(usable[-2:])
                pairs[provider] = (read[0] if len(read) == 2 else None, read[-1])
        return pairs

    def view(self, as_of: date | None = None, rules: CreditRules | None = None,
             cover_on: date | None = None) -> dict[str, Any]:
        """The customer's credit, JSON-native (``GET /customers/{id}/credit``).

        ``risk`` is the assessment recorded by the last grade change; with ``as_of``,
        ``risk_as_of`` is the score computed for that date. Each position's
        ``secured_amount`` and ``unsecured_exposure`` are the securities' cover on
        ``cover_on`` (``as_of``, else the last review's date) and what it leaves.
        """
        rules = rules or _default_rules()
        day = cover_on or as_of or self.last_review_on
        positions = []
        for figure in self.figures():
            currency, exposure = figure["currency"], Decimal(figure["exposure"])
            secured = self.cover(currency, exposure, day)
            positions.append({**figure, "secured_amount": to_text(secured, currency),
                              "unsecured_exposure": to_text(exposure - secured, currency)})
        view: dict[str, Any] = {
            "customer_id": self.customer_id,
            "on_hold": self.on_hold,
            "positions": positions,
            "cover_on": day.isoformat() if day else None,
            "ratings": [dict(r) for _, r in sorted(self.ratings.items())],
            "prediction": dict(self.predictions[-1]) if self.predictions else None,
            "securities": [s.view(day) if day else {**s.view(s.valid_from), "counts": None}
                           for _, s in sorted(self.securities.items())],
            "limits": [
                {"currency": c, "amount": to_text(lim.amount, c), "set_by": lim.set_by, "source": lim.source,
                 "expires_on": lim.expires_on.isoformat() if lim.expires_on else None,
                 "review_on": lim.review_on.isoformat() if lim.review_on else None,
                 "review_due": lim.review_due}
                for c, lim in sorted(self.limits.items())
            ],
            "unapplied_cash": {c: to_text(v, c) for c, v in sorted(self.items.unapplied.items()) if v},
            "risk": dict(self.risk) if self.risk else None,
            "holds": [hold.as_dict() for hold in self.active_holds()],
            "overridden_reasons": _ordered(self.overridden),
            "reservations": [
                {"order_id": r.order_id, "currency": r.currency, "amount": to_text(r.amount, r.currency),
                 "remaining": to_text(r.remaining, r.currency), "reserved_on": r.reserved_on.isoformat(),
                 "expires_on": r.expires_on.isoformat()}
                for r in sorted(self.reservations.values(), key=lambda r: (r.expires_on, r.order_id))
            ],
            "overdue_invoices": self._overdue_lines(rules),
            "last_review_on": self.last_review_on.isoformat() if self.last_review_on else None,
        }
        if as_of is not None:
            view["risk_as_of"] = self.assess(as_of, rules.risk).as_dict()
        return view

    # ----------------------------------------------------------------- ledger facts

    def observe(self, fact: Fact, rules: CreditRules | None = None) -> bool:
        """Take in one ``ar.ledger.events`` fact; False when it changed nothing (or was seen before).

        ``customer.upserted`` from ``ar.customers`` is taken like ``ledger.customer_updated``.
        The hold rules are evaluated after every change.
        """
        if isinstance(fact.body, RatingReported):
            return self._observe_rating(fact.body, fact.data.get("origin"), rules or _default_rules())
        if isinstance(fact.body, CommitmentBroken):
            return self._observe_broken(fact, rules or _default_rules())
        changed = self.items.take(fact, self._observe_profile, self._record)
        changed = self._observe_deposit(fact) or changed
        if changed:
            trigger = {"kind": "ledger", "event_type": fact.event_type, "event_id": fact.event_id}
            self._evaluate(rules or _default_rules(), trigger, fact.effective_date)
        return changed

    def _observe_deposit(self, fact: Fact) -> bool:
        """The ledger's prepayment requests and what came for them (a check for the order asks
        for what is still awaited); each known once, so a redelivery changes nothing."""
        body = fact.body
        if isinstance(body, PrepaymentAsked):
            known = self.deposits.get(body.request_id)
            if known is not None and known.amount is not None:
                return False
            self._deposit_requested(request={"request_id": body.request_id, "order_id": body.order_id,
                                             "currency": body.currency, "amount": str(body.amount)})
            return True
        if isinstance(body, PrepaymentPaid):
            known = self.deposits.get(body.request_id)
            if known is not None and body.payment_id in known.received:
                return False
            self._deposit_received(receipt={"request_id": body.request_id, "payment_id": body.payment_id,
                                            "amount": str(body.amount)})
            return True
        if isinstance(body, PrepaymentWithdrawn):
            known = self.deposits.get(body.request_id)
            if known is None or known.withdrawn:
                return False
            self._deposit_withdrawn(request_id=body.request_id)
            return True
        # what was received may go: a payment reversed (all of it), or paid back (what was taken)
        if fact.event_type == "ledger.invoice_changed" and fact.data.get("change") == "payment_reversed":
            return self._take_back(str(fact.data.get("payment_id")), None, "reversal")
        if isinstance(body, RefundIssued) and body.refund_id not in self.deposit_refunds:
            taken = [(t.credit.removeprefix("payment:"), t.amount) for t in body.taken
                     if t.credit.startswith("payment:")]
            results = [self._take_back(payment_id, amount, f"refund:{body.refund_id}")
                       for payment_id, amount in sorted(taken)]
            return any(results)
        return False

    def _take_back(self, payment_id: str, amount: Decimal | None, by: str) -> bool:
        """Lower what the deposits received of a payment (``amount`` None: all of it)."""
        requests = {request_id: str(d.received[payment_id] if amount is None
                                    else min(amount, d.received[payment_id]))
                    for request_id, d in sorted(self.deposits.items()) if payment_id in d.received}
        if requests:
            self._deposit_taken_back(change={"payment_id": payment_id, "by": by, "requests": requests})
        return bool(requests)

    def _observe_rating(self, rating: RatingFields, origin: Mapping[str, Any] | None,
                        rules: CreditRules, *, by: str | None = None) -> bool:
        """An outside rating (``ar.ratings``, or by REST with ``by``): recorded once per message;
        the provider's latest report on or before a date is the one read then."""
        key = f"{origin.get('source')}/{origin.get('id')}" if origin else None
        if key is not None and key in self.rating_keys:
            return False
        self._rating_reported(rating=_rating_record(rating), key=key, by=by)
        self._evaluate(rules, {"kind": "rating", "provider": rating.provider, "by": by},
                       rating.report_date.isoformat())
        return True

    def _observe_broken(self, fact: Fact, rules: CreditRules) -> bool:
        """A promise or a payment plan dunning recorded as broken (once per promise or plan)."""
        body = fact.body
        assert isinstance(body, CommitmentBroken)
        if body.broken is None:
            return False  # (a promise kept)
        kind, commitment_id, broken_on = body.broken
        if f"{kind}:{commitment_id}" in self.broken:
            return False
        self._commitment_broken(broken={"kind": kind, "id": commitment_id, "broken_on": broken_on.isoformat(),
                                        "event_id": fact.event_id})
        self._evaluate(rules, {"kind": "dunning", "event_type": fact.event_type, "event_id": fact.event_id},
                       broken_on.isoformat())
        return True

    def report_rating(self, rating: RatingFields, by: str,
                      rules: CreditRules | None = None) -> dict[str, Any]:
        """``POST /customers/{id}/ratings``: the rating as recorded; the same report again (provider,
        date and figures) records nothing."""
        by = _required(by, "by")
        if _rating_record(rating) not in self.rating_reports.get(rating.provider, []):
            self._observe_rating(rating, None, rules or _default_rules(), by=by)
        return {"customer_id": self.customer_id, **_rating_record(rating)}

    def deposit_awaited(self, order_id: str, currency: str) -> Decimal:
        """What the ledger still awaits in advance for an order, in ``currency``."""
        return sum((d.awaited for d in self.deposits.values()
                    if d.order_id == order_id and d.currency == currency), ZERO)

    def _observe_profile(self, fact: Fact, sequence: list[int] | None) -> bool:
        credit_limit = fact.data.get("credit_limit")
        if not isinstance(credit_limit, Mapping):
            return False
        currency = _valid_currency(str(credit_limit.get("currency")))
        amount = _valid_amount(credit_limit.get("amount"), currency, "credit_limit.amount", positive=False)
        erp = {"currency": currency, "amount": str(amount)}
        seen = self.erp_limit
        if seen is not None and seen["currency"] == currency and Decimal(seen["amount"]) == amount:
            return False
        origin = fact.data.get("origin")
        source = origin.get("source") if isinstance(origin, Mapping) else None
        self._limit_set(limit={
            "customer_id": self.customer_id, "currency": currency, "amount": str(amount),
            "previous": self._limit_text(currency), "set_by": f"erp:{source}" if source else "erp",
            "source": "erp", "expires_on": None, "review_on": None,
            "cause": {"event_type": fact.event_type, "event_id": fact.event_id},
        }, erp_limit=erp, sequence=sequence)
        return True

    def _record(self, fact: Fact, change: MirrorChange, sequence: list[int] | None) -> bool:
        payload = change.payload
        if change.kind == "invoice_opened":
            assert isinstance(fact.body, InvoiceOpened)
            payload = self._fulfilling_order(payload, fact.body)
        getattr(self, f"_{change.kind}")(**payload, sequence=sequence)
        return True

    def _fulfilling_order(self, payload: dict[str, Any], opened: InvoiceOpened) -> dict[str, Any]:
        """The invoice's record with the order it fulfils and the reservation it consumes (if any)."""
        attributes = opened.attributes or {}
        candidates = [str(key) for key in (attributes.get("order_id"), opened.reference) if key]
        consumed = []
        for order_id in candidates:
            reservation = self.reservations.get(order_id)
            if reservation is not None and reservation.currency == opened.currency:
                amount = min(opened.amount, reservation.remaining)
                consumed.append({"order_id": order_id, "amount": str(amount),
                                 "remaining": str(reservation.remaining - amount)})
                break
        fulfils = consumed[0]["order_id"] if consumed else (candidates[0] if candidates else None)
        return {**payload, "invoice": {**payload["invoice"], "order_id": fulfils}, "consumed": consumed}

    # ----------------------------------------------------------------- commands

    def check(self, order_id: str, amount: Decimal, currency: str, on: date,
              rules: CreditRules | None = None) -> dict[str, Any]:
        """Answer a credit check for an order on business date ``on``; an approval reserves the amount.

        The same ``order_id`` again returns the answer given the first time, reserving nothing.
        """
        order_id = _required(order_id, "order_id")
        currency = _valid_currency(currency)
        amount = _valid_amount(amount, currency, "amount", positive=True)
        given = self.checks.get(order_id)
        awaited = self.deposit_awaited(order_id, currency) if self.deposits else ZERO
        if given is not None:
            if (given["currency"], Decimal(given["amount"])) != (currency, amount):
                raise ConflictingCheck(
                    f"order {order_id} was checked for {given['amount']} {given['currency']}, "
                    f"not {amount} {currency}", field="order_id")
            # an answer waiting for a deposit is decided again once what is awaited changed
            if "deposit_required" not in given["reasons"] or given.get("deposit_amount") == to_text(
                    awaited, currency):
                return dict(given)
        rules = rules or _default_rules()
        exposure = self.exposure(currency)
        limit = self.limit_amount(currency)
        holds = self.active_holds()
        # what the securities valid on the order's date cover of the exposure with the order
        secured = self.cover(currency, exposure + amount, on)
        if holds:
            decision, reasons = "hold", _ordered(r for hold in holds for r in hold.reasons)
        elif limit is None:
            decision, reasons = "review", ["no_limit"]
        elif exposure + amount - secured > limit:
            decision, reasons = "review", ["limit_exceeded"]
        else:
            decision, reasons = "approve", []
        if awaited > ZERO and decision != "hold":
            decision, reasons = "review", [*reasons, "deposit_required"]
        amount_text = to_text(amount, currency)
        reservation = None
        if decision == "approve":
            reservation = {"order_id": order_id, "currency": currency, "amount": amount_text,
                           "reserved_on": on.isoformat(),
                           "expires_on": (on + timedelta(days=rules.reservation_days)).isoformat()}
        answer = {
            "order_id": order_id, "customer_id": self.customer_id, "currency": currency,
            "amount": amount_text, "on": on.isoformat(), "decision": decision,
            "available_credit": to_text(limit - exposure + secured, currency) if limit is not None else None,
            "exposure": to_text(exposure, currency),
            "limit": to_text(limit, currency) if limit is not None else None,
            "secured_amount": to_text(secured, currency),
            "deposit_amount": to_text(awaited, currency) if awaited > ZERO else None,
            "reasons": reasons, "hold_ids": [hold.hold_id for hold in holds],
            "reserved_until": reservation["expires_on"] if reservation else None,
        }
        # the library call behind the decorated method, arguments by name: the same event
        # without the decorator's per-call argument binding (the check is the hot path)
        self.trigger_event(self.CreditChecked, check=answer, reservation=reservation)
        return dict(answer)

    def set_limit(self, currency: str, amount: Decimal, by: str, expires_on: date | None = None,
                  review_on: date | None = None, rules: CreditRules | None = None,
                  on: date | None = None) -> dict[str, Any]:
        """Set the limit of one currency (``PUT /customers/{id}/credit-limit``); returns its position.

        The same limit again (amount and dates) records nothing.
        """
        currency = _valid_currency(currency)
        amount = _valid_amount(amount, currency, "amount", positive=False)
        by = _required(by, "by")
        current = self.limits.get(currency)
        if current is not None and (current.amount, current.expires_on, current.review_on) == (
                amount, expires_on, review_on) and current.source == "api":
            return self.position(currency)
        self._limit_set(limit={
            "customer_id": self.customer_id, "currency": currency, "amount": str(amount),
            "previous": self._limit_text(currency), "set_by": by, "source": "api",
            "expires_on": expires_on.isoformat() if expires_on else None,
            "review_on": review_on.isoformat() if review_on else None, "cause": {"kind": "api"},
        }, erp_limit=self.erp_limit, sequence=None)
        self._evaluate(rules or _default_rules(), {"kind": "limit_set", "by": by},
                       on.isoformat() if on else None)
        return self.position(currency)

    def review(self, as_of: date, rules: CreditRules | None = None) -> ReviewResult:
        """The credit review for ``as_of``: expire limits and reservations, flag limits due for
        review, mark invoices past the overdue rule, record the risk grade, evaluate the holds.

        Run again for the same date it changes nothing; a date before the last recorded review
        does nothing.
        """
        if self.last_review_on is not None and as_of < self.last_review_on:
            return ReviewResult(as_of)
        rules = rules or _default_rules()
        day = as_of.isoformat()
        limits_expired = []
        for currency, limit in sorted(self.limits.items()):
            if limit.expires_on is not None and limit.expires_on < as_of:
                self._limit_expired(customer_id=self.customer_id, currency=currency, amount=str(limit.amount),
                                    expires_on=limit.expires_on.isoformat(), as_of=day)
                limits_expired.append(currency)
        limits_to_review = []
        for currency, limit in sorted(self.limits.items()):
            if limit.review_on is not None and limit.review_on <= as_of and not limit.review_due:
                self._limit_review_due(customer_id=self.customer_id, currency=currency,
                                       review_on=limit.review_on.isoformat(), as_of=day)
                limits_to_review.append(currency)
        expired = sorted((r for r in self.reservations.values() if r.expires_on < as_of),
                         key=lambda r: r.order_id)
        if expired:
            self._reservations_expired(as_of=day, reservations=[
                {"order_id": r.order_id, "currency": r.currency, "remaining": str(r.remaining),
                 "expires_on": r.expires_on.isoformat()} for r in expired])
        expiring = self._announce_expiring(as_of)
        newly_overdue = self._mark_overdue(as_of, rules)
        assessment = self.assess(as_of, rules.risk)
        grade_change = None
        if assessment.grade != self.grade:
            grade_change = {"previous": self.grade, **assessment.as_dict()}
            self._risk_grade_changed(customer_id=self.customer_id, as_of=day, previous=self.grade,
                                     assessment=assessment.as_dict())
        evaluation = self._evaluate(rules, {"kind": "review", "as_of": day}, day)
        return ReviewResult(as_of, limits_expired, limits_to_review, [r.order_id for r in expired],
                            newly_overdue, grade_change, evaluation.placed, evaluation.changed,
                            evaluation.released, expiring)

    def _mark_overdue(self, as_of: date, rules: CreditRules) -> list[str]:
        rule = rules.overdue_rule
        marks: dict[str, int] = {}
        if rule is not None:
            for invoice in self.items.open_items():
                days = (as_of - invoice.due_date).days
                if days > rule.days_past_due:
                    marks[invoice.invoice_id] = days
        still = {i for i in self.overdue if i in self.items.open_ids}
        if set(marks) == still:
            return []
        self._overdue_marked(as_of=as_of.isoformat(), days_past_due=rule.days_past_due if rule else None,
                             invoices=dict(sorted(marks.items())))
        return sorted(set(marks) - still)

    def place_manual_hold(self, by: str, reason: str, rules: CreditRules | None = None) -> dict[str, Any]:
        """Put the customer on hold by hand (``POST /customers/{id}/holds``); returns the hold.

        While a manual hold is active, placing another returns it unchanged.
        """
        by = _required(by, "by")
        reason = _required(reason, "reason")
        for hold in self.active_holds():
            if hold.kind == "manual":
                return hold.as_dict()
        record = self._hold_record("manual", ["manual"], by, reason, {"kind": "manual", "by": by}, None,
                                   rules or _default_rules())
        self._hold_placed(hold=record)
        return self.holds[record["hold_id"]].as_dict()

    def release_hold(self, hold_id: str, by: str, reason: str,
                     rules: CreditRules | None = None) -> dict[str, Any]:
        """Release a hold by hand (``POST /holds/{id}/release``); returns the release as recorded.

        Releasing an automatic hold overrides its reasons until they stop holding.
        """
        hold = self.holds.get(hold_id)
        if hold is None:
            raise UnknownHold(f"hold {hold_id} is not known for customer {self.customer_id}", field="hold_id")
        if hold.status != "active":
            raise HoldNotActive(f"hold {hold_id} was already released by {hold.released_by}", field="hold_id")
        by = _required(by, "by")
        reason = _required(reason, "reason")
        release = self._release_record(hold, by, reason, {"kind": "manual", "by": by}, None,
                                       overrides=list(hold.reasons) if hold.kind == "automatic" else [])
        self._hold_released(release=release)
        return release

    # ----------------------------------------------------------------- securities

    def register_security(self, record: dict[str, Any], by: str, on: date,
                          rules: CreditRules | None = None) -> dict[str, Any]:
        """Record a security (``security_record`` checked it); the same again is answered as it
        stands, other content under its id is refused. The hold rules follow its cover on ``on``."""
        by = _required(by, "by")
        security_id = record["security_id"]
        known = self.securities.get(security_id)
        if known is not None:
            if known.record == record:
                return known.view(on)
            raise ConflictingSecurity(f"security {security_id} is registered already with other content",
                                      field="security_id")
        self._security_registered(security=record, by=by, on=on.isoformat())
        self._evaluate(rules or _default_rules(), {"kind": "security", "security_id": security_id, "by": by},
                       on.isoformat())
        return self.securities[security_id].view(on)

    def release_security(self, security_id: str, reason: str, on: date, by: str,
                         rules: CreditRules | None = None) -> dict[str, Any]:
        """Give a security back: it covers nothing from ``on``."""
        security = self._security(security_id)
        by, reason = _required(by, "by"), _required(reason, "reason")
        if security.released_on is not None:
            raise ConflictingSecurity(f"security {security_id} was released on {security.released_on}",
                                      field="security")
        self._security_released(release={"security_id": security_id, "customer_id": self.customer_id,
                                         "reason": reason, "released_on": on.isoformat(), "by": by})
        self._evaluate(rules or _default_rules(), {"kind": "security", "security_id": security_id, "by": by},
                       on.isoformat())
        return security.view(on)

    def draw_security(self, security_id: str, amount: Decimal, drawn_on: date, by: str,
                      rules: CreditRules | None = None, *, draw_id: str | None = None) -> dict[str, Any]:
        """Call on a security (the bank pays under its guarantee, a note is cashed): what is left
        of it covers less from ``drawn_on``. A ``draw_id`` seen before draws nothing again."""
        security = self._security(security_id)
        if draw_id is not None and draw_id in security.draw_ids:
            return security.view(drawn_on)
        by = _required(by, "by")
        if not security.covers or security.currency is None or security.amount is None:
            raise ConflictingSecurity(f"a {security.kind} is a record without cover: nothing to draw",
                                      field="security")
        amount = _valid_amount(amount, security.currency, "amount", positive=True)
        if not security.counts_on(drawn_on):
            raise InvalidCommand(f"drawn_on: security {security_id} does not count on {drawn_on} "
                                 f"({security.status(drawn_on)})", field="drawn_on")
        left = security.amount - security.drawn()
        if amount > left:
            raise InvalidAmount(f"amount: {amount} is more than the {left} {security.currency} left of "
                                f"security {security_id}", field="amount")
        self._security_drawn(draw={"security_id": security_id, "customer_id": self.customer_id,
                                   "amount": str(amount), "drawn_on": drawn_on.isoformat(), "by": by,
                                   "draw_id": draw_id})
        self._evaluate(rules or _default_rules(), {"kind": "security", "security_id": security_id, "by": by},
                       drawn_on.isoformat())
        return security.view(drawn_on)

    def _security(self, security_id: str) -> Security:
        security = self.securities.get(security_id)
        if security is None:
            raise UnknownSecurity(f"security {security_id} is not known for customer {self.customer_id}",
                                  field="security")
        return security

    def _announce_expiring(self, as_of: date) -> list[str]:
        """The securities still counting that end within the notice period: announced once."""
        ending = []
        for security in sorted(self.securities.values(), key=lambda s: s.security_id):
            until = security.valid_until
            if until is None or security.expiry_announced or not security.counts_on(as_of):
                continue
            if until <= as_of + timedelta(days=EXPIRY_NOTICE_DAYS):
                self._security_expiring(notice={
                    "security_id": security.security_id, "customer_id": self.customer_id,
                    "kind": security.kind, "currency": security.currency,
                    "amount": None if security.amount is None else str(security.amount - security.drawn()),
                    "valid_until": until.isoformat(), "days_left": (until - as_of).days,
                    "as_of": as_of.isoformat()})
                ending.append(security.security_id)
        return ending

    # ----------------------------------------------------------------- early warnings

    def _judge_warnings(self, rules: CreditRules, day: date, trigger: dict[str, Any]) -> None:
        """Raise a warning for each signal that trips and has none open; at a review, clear the
        open ones whose condition no longer holds."""
        situation = self._situation(day, rules)
        at_review = trigger.get("kind") == "review"
        for rule in rules.warning_rules:
            open_id = self.open_warnings.get(rule.signal)
            if open_id is not None and not at_review:
                continue  # (open already: only a review may clear it)
            found = evidence(rule, situation)
            if found is not None and open_id is None:
                self._warning_raised(warning={
                    "warning_id": credit_warning_id(self.customer_id, len(self.warnings) + 1),
                    "customer_id": self.customer_id, "signal": rule.signal, "severity": rule.severity,
                    "evidence": found, "raised_on": day.isoformat(), "hold": rule.hold, "trigger": trigger})
            elif found is None and open_id is not None and at_review \
                    and self.warnings[open_id]["raised_on"] <= day.isoformat():  # (not one raised later)
                self._warning_cleared(clearance={
                    "warning_id": open_id, "customer_id": self.customer_id, "signal": rule.signal,
                    "cleared_on": day.isoformat()})

    def _situation(self, day: date, rules: CreditRules) -> Situation:
        pairs = self.rating_pairs(day)
        return Situation(
            day=day, settled=self.settled, broken=list(self.broken.values()),
            ratings=[(before, latest) for before, latest in pairs.values() if before is not None],
            rating_model=rules.risk.ratings, grade=self.grade, previous_grade=self.previous_grade,
            utilisation=[Utilisation(c, self.unsecured(c, day), limit.amount)
                         for c, limit in sorted(self.limits.items())],
            securities=[Ending(s.security_id, s.kind, s.valid_until) for s in self.securities.values()
                        if s.valid_until is not None and s.counts_on(day)])

    def acknowledge_warning(self, warning_id: str, note: str, by: str, on: date) -> dict[str, Any]:
        """A user saw the warning and says what is done about it (audited); it stays as it is."""
        warning = self.warnings.get(warning_id)
        if warning is None:
            raise UnknownWarning(f"warning {warning_id} is not known for customer {self.customer_id}",
                                 field="warning")
        self._warning_acknowledged(acknowledgement={
            "warning_id": warning_id, "customer_id": self.customer_id, "note": _required(note, "note"),
            "by": _required(by, "by"), "acknowledged_on": on.isoformat()})
        return self.warning_view(warning_id)

    def warning_view(self, warning_id: str) -> dict[str, Any]:
        warning = self.warnings[warning_id]
        return {k: v for k, v in warning.items() if k != "trigger"}

    # ----------------------------------------------------------------- hold rules

    def _limit_breaches(self, rules: CreditRules, day: date | None) -> list[str]:
        """The currencies whose exposure less the securities' cover on ``day`` is over the
        limit the rule allows."""
        rule = rules.limit_rule
        if rule is None:
            return []
        return [currency for currency, limit in sorted(self.limits.items())
                if self.unsecured(currency, day) > rule.allowed(limit.amount)]

    def unsecured(self, currency: str, day: date | None) -> Decimal:
        exposure = self.exposure(currency)
        return exposure - self.cover(currency, exposure, day)

    def _overdue(self, rules: CreditRules) -> Iterator[tuple[OpenItem, int]]:
        """The marked invoices that make the overdue rule hold now, with their days past due."""
        rule = rules.overdue_rule
        if rule is None:
            return
        for invoice_id, days in self.overdue.items():
            invoice = self.items.invoices[invoice_id]
            if not invoice.is_open:
                continue
            amount = invoice.open_amount if rule.count_disputed else self.items.undisputed_amount(invoice)
            if amount > rule.min_amount:
                yield invoice, days

    def _overdue_lines(self, rules: CreditRules) -> list[dict[str, Any]]:
        """The marked invoices that make the overdue rule hold now, most overdue first."""
        lines = [{"invoice_id": invoice.invoice_id, "currency": invoice.currency,
                  "due_date": invoice.due_date.isoformat(), "days_past_due": days,
                  "open_amount": to_text(invoice.open_amount, invoice.currency)}
                 for invoice, days in self._overdue(rules)]
        return sorted(lines, key=lambda line: (-line["days_past_due"], line["invoice_id"]))

    def _firing(self, rules: CreditRules, day: date | None) -> list[str]:
        """The hold rules that apply now (evaluated after every change: kept to what they need)."""
        reasons = []
        if self._limit_breaches(rules, day):
            reasons.append("limit_exceeded")
        if next(self._overdue(rules), None) is not None:
            reasons.append("overdue_days")
        grade_rule = rules.grade_rule
        if grade_rule is not None and self.grade in grade_rule.grades:
            reasons.append("risk_grade")
        if any(self.warnings[w]["hold"] for w in self.open_warnings.values()):
            reasons.append("early_warning")
        return reasons

    def _headline(self, reasons: list[str], rules: CreditRules,
                  day: date | None) -> tuple[str | None, str | None, str | None]:
        """The (currency, exposure, limit) a hold's one-figure fields show: the currency behind it."""
        currency = None
        if "limit_exceeded" in reasons and (breaches := self._limit_breaches(rules, day)):
            currency = breaches[0]
        elif "overdue_days" in reasons and self._overdue_lines(rules):
            currency = self._overdue_lines(rules)[0]["currency"]
        else:
            figures = self.figures()
            with_limit = [f for f in figures if f["limit"] is not None]
            if with_limit:
                currency = with_limit[0]["currency"]
            elif figures:
                currency = max(figures, key=lambda f: Decimal(f["exposure"]))["currency"]
        if currency is None:
            return None, None, None
        position = self.position(currency)
        return currency, position["exposure"], position["limit"]

    def _hold_record(self, kind: str, reasons: list[str], by: str, note: str | None,
                     trigger: dict[str, Any], effective_date: str | None,
                     rules: CreditRules) -> dict[str, Any]:
        number = len(self.holds) + 1
        day = self._judging_day(effective_date)
        currency, exposure, limit = self._headline(reasons, rules, day)
        return {
            "hold_id": credit_hold_id(self.customer_id, number), "number": number,
            "customer_id": self.customer_id,
            "kind": kind, "reasons": reasons, "placed_by": by, "note": note,
            "effective_date": effective_date, "trigger": trigger,
            "currency": currency, "exposure": exposure, "limit": limit, "positions": self.figures(),
            "overdue_invoices": self._overdue_lines(rules), "risk_grade": self.grade,
            "risk_score": self.risk["score"] if self.risk else None,
        }

    def _release_record(self, hold: Hold, by: str, reason: str, trigger: dict[str, Any],
                        effective_date: str | None, overrides: list[str]) -> dict[str, Any]:
        return {"hold_id": hold.hold_id, "customer_id": self.customer_id, "kind": hold.kind,
                "reasons": list(hold.reasons), "released_by": by, "reason": reason,
                "effective_date": effective_date, "trigger": trigger, "overrides": overrides,
                "positions": self.figures()}

    def _evaluate(self, rules: CreditRules, trigger: dict[str, Any],
                  effective_date: str | None) -> _Evaluation:
        """Place, change or release the automatic hold as the rules now say (securities cover
        as on the change's effective date, else the last review's)."""
        day = self._judging_day(effective_date)
        if day is not None and rules.warning_rules:
            self._judge_warnings(rules, day, trigger)
        result = _Evaluation()
        firing = self._firing(rules, day)
        lapsed = _ordered(self.overridden - set(firing))
        if lapsed:
            self._overrides_lapsed(reasons=lapsed, trigger=trigger)
        wanted = [reason for reason in firing if reason not in self.overridden]
        current = next((h for h in self.active_holds() if h.kind == "automatic"), None)
        if wanted and current is None:
            record = self._hold_record("automatic", wanted, "auto", None, trigger, effective_date, rules)
            self._hold_placed(hold=record)
            result.placed.append(record)
        elif wanted and current is not None and list(current.reasons) != wanted:
            change = {"hold_id": current.hold_id, "customer_id": self.customer_id,
                      "previous_reasons": list(current.reasons), "reasons": wanted,
                      "effective_date": effective_date, "trigger": trigger, "positions": self.figures(),
                      "overdue_invoices": self._overdue_lines(rules), "risk_grade": self.grade}
            self._hold_reasons_changed(change=change)
            result.changed.append(change)
        elif not wanted and current is not None:
            release = self._release_record(
                current, "auto", f"no hold rule applies any more ({', '.join(current.reasons)} cleared)",
                trigger, effective_date, overrides=[])
            self._hold_released(release=release)
            result.released.append(release)
        return result

    def _judging_day(self, effective_date: str | None) -> date | None:
        """The day a change is judged on (securities' cover, warnings): its own date, but never
        one before the last review's or the latest the account's commands named (a message
        dated earlier does not take back what they saw)."""
        days = [d for d in (date.fromisoformat(effective_date[:10]) if effective_date else None,
                            self.last_review_on, self.judged_on) if d is not None]
        return max(days, default=None)

    def _limit_text(self, currency: str) -> str | None:
        limit = self.limits.get(currency)
        return str(limit.amount) if limit is not None else None

    # ----------------------------------------------------------------- events

    def _reviewed(self, trigger: Mapping[str, Any]) -> None:
        if trigger.get("kind") == "review":
            self.last_review_on = date.fromisoformat(trigger["as_of"])

    @event("InvoiceOpened")
    def _invoice_opened(self, invoice: dict[str, Any], outcomes: list[dict[str, Any]],
                        consumed: list[dict[str, str]], sequence: list[int] | None) -> None:
        self.items.open_invoice(invoice, outcomes, sequence)
        self._index_settled([invoice, *outcomes])
        for entry in consumed:
            reservation = self.reservations[entry["order_id"]]
            amount = Decimal(entry["amount"])
            reservation.remaining -= amount
            self.reserved[reservation.currency] -= amount
            if reservation.remaining <= ZERO:
                del self.reservations[reservation.order_id]

    @event("OpenAmountsChanged")
    def _open_amounts_changed(self, outcomes: list[dict[str, Any]], effective_date: str | None,
                              sequence: list[int] | None) -> None:
        self.items.change_open_amounts(outcomes, sequence)
        self._index_settled(outcomes)

    @event("DisputeOpened")
    def _dispute_opened(self, dispute_id: str, invoice_id: str, amount: str,
                        sequence: list[int] | None) -> None:
        self.items.open_dispute(dispute_id, invoice_id, amount, sequence)

    @event("DisputeClosed")
    def _dispute_closed(self, dispute_id: str, outcome: str, outcomes: list[dict[str, Any]],
                        sequence: list[int] | None, effective_date: str | None = None) -> None:
        self.items.close_dispute(dispute_id, outcomes, sequence)
        self._index_settled(outcomes)

    def _index_settled(self, changed: Iterable[Mapping[str, Any]]) -> None:
        for entry in changed:
            invoice = self.items.invoices.get(entry["invoice_id"])
            if invoice is not None:
                self.settled.update(invoice.invoice_id, invoice.due_date, invoice.settled_date,
                                    invoice.status == "paid")

    @event("UnappliedCashChanged")
    def _unapplied_cash_changed(self, currency: str, change: str, sequence: list[int] | None) -> None:
        self.items.change_unapplied(currency, change, sequence)

    @event("LimitSet")
    def _limit_set(self, limit: dict[str, Any], erp_limit: dict[str, str] | None,
                   sequence: list[int] | None) -> None:
        self.items.advance(sequence)
        self.erp_limit = erp_limit
        self.limits[limit["currency"]] = Limit(
            currency=limit["currency"], amount=Decimal(limit["amount"]), set_by=limit["set_by"],
            source=limit["source"],
            expires_on=date.fromisoformat(limit["expires_on"]) if limit["expires_on"] else None,
            review_on=date.fromisoformat(limit["review_on"]) if limit["review_on"] else None,
        )

    @event("LimitExpired")
    def _limit_expired(self, customer_id: str, currency: str, amount: str, expires_on: str,
                       as_of: str) -> None:
        self.last_review_on = date.fromisoformat(as_of)
        del self.limits[currency]

    @event("LimitReviewDue")
    def _limit_review_due(self, customer_id: str, currency: str, review_on: str, as_of: str) -> None:
        self.last_review_on = date.fromisoformat(as_of)
        self.limits[currency].review_due = True

    @event("CreditChecked")
    def _credit_checked(self, check: dict[str, Any], reservation: dict[str, str] | None) -> None:
        self.checks[check["order_id"]] = check
        self._saw(check["on"])
        if reservation is not None:
            amount = Decimal(reservation["amount"])
            self.reservations[reservation["order_id"]] = Reservation(
                order_id=reservation["order_id"], currency=reservation["currency"], amount=amount,
                remaining=amount, reserved_on=date.fromisoformat(reservation["reserved_on"]),
                expires_on=date.fromisoformat(reservation["expires_on"]),
            )
            self.reserved[reservation["currency"]] = self.reserved.get(reservation["currency"], ZERO) + amount

    @event("ReservationsExpired")
    def _reservations_expired(self, as_of: str, reservations: list[dict[str, str]]) -> None:
        self.last_review_on = date.fromisoformat(as_of)
        for entry in reservations:
            reservation = self.reservations.pop(entry["order_id"])
            self.reserved[reservation.currency] -= reservation.remaining

    @event("OverdueMarked")
    def _overdue_marked(self, as_of: str, days_past_due: int | None, invoices: dict[str, int]) -> None:
        self.last_review_on = date.fromisoformat(as_of)
        self.overdue = dict(invoices)

    @event("RiskGradeChanged")
    def _risk_grade_changed(self, customer_id: str, as_of: str, previous: str | None,
                            assessment: dict[str, Any]) -> None:
        self.last_review_on = date.fromisoformat(as_of)
        self.risk = assessment
        self.previous_grade = previous

    @event("HoldPlaced")
    def _hold_placed(self, hold: dict[str, Any]) -> None:
        self._reviewed(hold["trigger"])
        self.holds[hold["hold_id"]] = Hold(
            hold_id=hold["hold_id"], kind=hold["kind"], reasons=tuple(hold["reasons"]),
            placed_by=hold["placed_by"], note=hold["note"], effective_date=hold["effective_date"],
        )

    @event("HoldReasonsChanged")
    def _hold_reasons_changed(self, change: dict[str, Any]) -> None:
        self._reviewed(change["trigger"])
        self.holds[change["hold_id"]].reasons = tuple(change["reasons"])

    @event("HoldReleased")
    def _hold_released(self, release: dict[str, Any]) -> None:
        self._reviewed(release["trigger"])
        hold = self.holds[release["hold_id"]]
        hold.status = "released"
        hold.released_by = release["released_by"]
        hold.release_reason = release["reason"]
        self.overridden.update(release["overrides"])

    @event("OverridesLapsed")
    def _overrides_lapsed(self, reasons: list[str], trigger: dict[str, Any]) -> None:
        self._reviewed(trigger)
        self.overridden.difference_update(reasons)

    @event("SecurityRegistered")
    def _security_registered(self, security: dict[str, Any], by: str, on: str) -> None:
        self.securities[security["security_id"]] = Security.from_record(security)
        self._saw(on)

    @event("SecurityReleased")
    def _security_released(self, release: dict[str, Any]) -> None:
        self.securities[release["security_id"]].released_on = date.fromisoformat(release["released_on"])
        self._saw(release["released_on"])

    @event("SecurityDrawn")
    def _security_drawn(self, draw: dict[str, Any]) -> None:
        security = self.securities[draw["security_id"]]
        security.draws.append((date.fromisoformat(draw["drawn_on"]), Decimal(draw["amount"])))
        if draw.get("draw_id"):
            security.draw_ids.add(draw["draw_id"])
        self._saw(draw["drawn_on"])

    def _saw(self, day: str) -> None:
        seen = date.fromisoformat(day)
        if self.judged_on is None or seen > self.judged_on:
            self.judged_on = seen

    @event("SecurityExpiring")
    def _security_expiring(self, notice: dict[str, Any]) -> None:
        self.securities[notice["security_id"]].expiry_announced = True

    @event("DepositRequested")
    def _deposit_requested(self, request: dict[str, Any]) -> None:
        deposit = self.deposits.setdefault(request["request_id"], Deposit())
        deposit.order_id, deposit.currency = request["order_id"], request["currency"]
        deposit.amount = Decimal(request["amount"])

    @event("DepositReceived")
    def _deposit_received(self, receipt: dict[str, Any]) -> None:
        deposit = self.deposits.setdefault(receipt["request_id"], Deposit())
        deposit.received[receipt["payment_id"]] = Decimal(receipt["amount"])

    @event("DepositWithdrawn")
    def _deposit_withdrawn(self, request_id: str) -> None:
        self.deposits[request_id].withdrawn = True

    @event("RatingReported")
    def _rating_reported(self, rating: dict[str, Any], key: str | None, by: str | None) -> None:
        if key is not None:
            self.rating_keys.add(key)
        reports = self.rating_reports.setdefault(rating["provider"], [])
        reports.append(rating)
        reports.sort(key=lambda r: r["report_date"])  # (stable: one date's reports in arrival order)
        self.ratings[rating["provider"]] = reports[-1]

    @event("LatenessPredicted")
    def _lateness_predicted(self, prediction: dict[str, Any]) -> None:
        self.predictions.append(prediction)

    @event("CommitmentBroken")
    def _commitment_broken(self, broken: dict[str, str]) -> None:
        self.broken[f"{broken['kind']}:{broken['id']}"] = {k: broken[k] for k in ("kind", "id", "broken_on")}

    @event("WarningRaised")
    def _warning_raised(self, warning: dict[str, Any]) -> None:
        self.warnings[warning["warning_id"]] = {**warning, "status": "open", "cleared_on": None,
                                                "acknowledgements": []}
        self.open_warnings[warning["signal"]] = warning["warning_id"]

    @event("WarningCleared")
    def _warning_cleared(self, clearance: dict[str, Any]) -> None:
        self.warnings[clearance["warning_id"]].update(status="cleared", cleared_on=clearance["cleared_on"])
        self.open_warnings.pop(clearance["signal"], None)

    @event("WarningAcknowledged")
    def _warning_acknowledged(self, acknowledgement: dict[str, Any]) -> None:
        self.warnings[acknowledgement["warning_id"]]["acknowledgements"].append(
            {k: acknowledgement[k] for k in ("note", "by", "acknowledged_on")})

    @event("DepositTakenBack")
    def _deposit_taken_back(self, change: dict[str, Any]) -> None:
        """A payment for a deposit reversed (all of it) or refunded (the amount given)."""
        if change["by"].startswith("refund:"):
            self.deposit_refunds.add(change["by"].removeprefix("refund:"))
        for request_id, amount in change["requests"].items():
            received = self.deposits[request_id].received
            left = received[change["payment_id"]] - Decimal(amount)
            if left > ZERO:
                received[change["payment_id"]] = left
            else:
                del received[change["payment_id"]]
