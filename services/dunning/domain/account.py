"""The dunning account: one customer's dunning state, fed by ledger facts and run by date.

Ledger facts (``ar.ledger.events``) come in through ``observe``: invoices opened, their
open amounts as every later event leaves them, disputes opened and closed, the customer's
profile (``dunning_policy``, ``do_not_dun``, language). Commands decide: ``run`` issues the
notice (or escalation) for a date and judges promises whose grace is over; ``promise``
pauses the covered invoices. The ``@event`` methods only record what was observed or
decided, so rebuilding from history never re-decides anything; payloads are JSON-native.

Choices where the contract is silent:

- Currencies are never mixed on a notice: a run issues at most one notice per currency
  (one in the usual single-currency case), each with its own level, conditions and
  deterministic id (customer, run date, currency).
- Runs only go forward: a run dated on or before the last one that recorded anything for
  this customer issues nothing. A run that decides nothing records nothing (no event per
  quiet customer per day); run again with the same facts it decides nothing again.
- A run decides on what is known when it runs (current open amounts and disputes);
  invoices issued after the run date are left out.
- Disputed amounts (capped at the open amount) are never dunned; an invoice whose
  undisputed part is zero drops out and, when the dispute is rejected, resumes at the level
  after its last one.
- A promise covers named invoices or, by default, the oldest due open invoices of the
  currency until their open amounts reach the promised amount. It is kept as soon as the
  covered open amount has fallen by the promised amount through facts effective by the
  promised date plus the policy's grace (the pause ends then), broken by the first run after
  that date without it (the invoices resume at their next level).
- An escalated invoice (handed to collections) is not dunned again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.dunning.domain.decision import Candidate, decide, earliest_action
from services.dunning.domain.errors import (
    AlreadyPromised,
    CurrencyMismatch,
    InvalidPromise,
    InvoiceNotOpen,
    UnknownInvoice,
)
from services.dunning.domain.notice import NoticeRenderer, build_notice
from services.dunning.domain.policy import DEFAULT_POLICY_NAME, Policy
from shared.money import ZERO, to_text

ACCOUNT_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:customer")
PROMISE_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:promise")

# Countries whose customers get German notices when their profile names no language.
_GERMAN_SPEAKING = {"DE", "AT", "LI"}


def dunning_account_id(customer_id: str) -> UUID:
    """Deterministic aggregate id: the dunning account of customer X is found without an index."""
    return uuid5(ACCOUNT_NAMESPACE, customer_id)


def ledger_sequence(event_id: str | None) -> tuple[int, int] | None:
    """The (account version, index) a ledger event id ``ledger:<account>:<version>:<index>`` names.

    A customer's ledger events come in this order, so a fact at or below the last one
    recorded is a redelivery and is ignored.
    """
    if not event_id or not event_id.startswith("ledger:"):
        return None
    parts = event_id.split(":")
    try:
        return int(parts[-2]), int(parts[-1])
    except (IndexError, ValueError):
        return None


@dataclass(slots=True)
class TrackedInvoice:
    """An invoice as dunning knows it."""

    invoice_id: str
    currency: str
    amount: Decimal
    issue_date: date
    due_date: date
    open_amount: Decimal
    status: str
    level: int = 0  # the last level it was dunned at
    last_noticed: date | None = None
    escalated: bool = False
    promise_id: str | None = None  # the open promise covering it


@dataclass(slots=True)
class Promise:
    """A promise to pay: pauses the covered invoices until ``until``."""

    promise_id: str
    currency: str
    amount: Decimal
    made_on: date
    promised_date: date
    until: date  # promised date plus the policy's grace
    invoice_ids: tuple[str, ...]
    baseline: Decimal  # the covered invoices' open total when it was made
    status: str = "open"  # open, kept, broken
    closed_on: date | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run recorded for a customer: notices (escalations among them) and broken promises."""

    notices: list[dict[str, Any]] = field(default_factory=list)
    broken_promises: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.notices or self.broken_promises)


def _message_key(origin: object) -> str | None:
    """The ERP message's idempotency key (source, id) from an ``origin`` member, if any."""
    if isinstance(origin, Mapping) and origin.get("source") and origin.get("id"):
        return f"{origin['source']}\x1f{origin['id']}"
    return None


def _outcome(entry: Mapping[str, Any]) -> dict[str, str]:
    return {"invoice_id": entry["invoice_id"], "open_amount": str(entry["open_amount"]),
            "status": str(entry.get("status") or "open")}


class DunningAccount(Aggregate):
    """One customer's dunning: the unit of consistency of a run."""

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return dunning_account_id(customer_id)

    @event("Opened")
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.profile: dict[str, Any] = {}
        self.invoices: dict[str, TrackedInvoice] = {}
        self.open_ids: set[str] = set()  # invoices with an open amount: all a run looks at
        self.disputes: dict[str, dict[str, Decimal]] = {}  # invoice id -> open dispute id -> amount
        self.dispute_invoice: dict[str, str] = {}  # every dispute id seen -> its invoice
        self.promises: dict[str, Promise] = {}
        self.notices: list[dict[str, Any]] = []  # summaries; the full notice is in its event
        self.last_notice_on: dict[str, date] = {}  # per currency
        self.last_run_on: date | None = None
        self.sequence: list[int] | None = None
        # (source, id) of the ERP customer.upserted messages applied: the same message reaches
        # dunning twice (ar.customers and the ledger's ledger.customer_updated), maybe late.
        self.profile_keys: set[str] = set()

    # ----------------------------------------------------------------- queries

    @property
    def policy_name(self) -> str:
        """The customer's policy: ``dunning_policy`` from its profile, else the default."""
        return str(self.profile.get("dunning_policy") or DEFAULT_POLICY_NAME)

    @property
    def do_not_dun(self) -> bool:
        return bool(self.profile.get("do_not_dun"))

    @property
    def language(self) -> str | None:
        """The profile's ``language``, else one named in its contacts, else from its country."""
        language = self.profile.get("language")
        contacts = self.profile.get("contacts")
        if not language and isinstance(contacts, dict):
            language = contacts.get("language")
        if not language and isinstance(contacts, list):
            named = [c["language"] for c in contacts if isinstance(c, dict) and c.get("language")]
            language = named[0] if named else None
        if not language and self.profile.get("country") in _GERMAN_SPEAKING:
            language = "de"
        return str(language).lower()[:2] if language else None

    def disputed_amount(self, invoice: TrackedInvoice) -> Decimal:
        disputed = sum(self.disputes.get(invoice.invoice_id, {}).values(), ZERO)
        return min(disputed, max(invoice.open_amount, ZERO))

    def dunnable_amount(self, invoice: TrackedInvoice) -> Decimal:
        """What a notice may ask for: the open amount less what is disputed."""
        return invoice.open_amount - self.disputed_amount(invoice)

    def is_paused(self, invoice: TrackedInvoice, as_of: date) -> bool:
        if invoice.promise_id is None:
            return False
        return as_of <= self.promises[invoice.promise_id].until

    def candidates(self, as_of: date) -> dict[str, list[Candidate]]:
        """The invoices a run on ``as_of`` may dun, per currency."""
        by_currency: dict[str, list[Candidate]] = {}
        for invoice_id in self.open_ids:
            invoice = self.invoices[invoice_id]
            if invoice.escalated or invoice.issue_date > as_of or self.is_paused(invoice, as_of):
                continue
            dunnable = self.dunnable_amount(invoice)
            if dunnable <= ZERO:
                continue
            by_currency.setdefault(invoice.currency, []).append(
                Candidate(invoice_id, invoice.due_date, dunnable, invoice.level))
        return by_currency

    def wake_date(self, policy: Policy) -> date | None:
        """A date before which a run cannot act for this customer unless new facts arrive.

        None when nothing is pending. A service may store it to pre-filter a run's candidates.
        """
        dates = [promise.until + timedelta(days=1) for promise in self.promises.values()
                 if promise.status == "open"]
        if not self.do_not_dun:
            for invoice_id in self.open_ids:
                invoice = self.invoices[invoice_id]
                if invoice.escalated or self.dunnable_amount(invoice) <= ZERO:
                    continue
                candidate = Candidate(invoice_id, invoice.due_date, invoice.open_amount, invoice.level)
                earliest = earliest_action(candidate, policy, self.last_notice_on.get(invoice.currency))
                if earliest is None:
                    continue
                earliest = max(earliest, invoice.issue_date)
                if invoice.promise_id is not None:
                    earliest = max(earliest, self.promises[invoice.promise_id].until + timedelta(days=1))
                dates.append(earliest)
        if not dates:
            return None
        soonest = min(dates)
        if self.last_run_on is not None:
            soonest = max(soonest, self.last_run_on + timedelta(days=1))
        return soonest

    def view(self) -> dict[str, Any]:
        """The customer's dunning state, JSON-native (``GET /customers/{id}/dunning``)."""
        return {
            "customer_id": self.customer_id,
            "policy": self.policy_name,
            "do_not_dun": self.do_not_dun,
            "invoices": [
                {"invoice_id": i.invoice_id, "currency": i.currency, "due_date": i.due_date.isoformat(),
                 "open_amount": to_text(i.open_amount, i.currency),
                 "disputed_amount": to_text(self.disputed_amount(i), i.currency),
                 "level": i.level, "last_noticed": i.last_noticed.isoformat() if i.last_noticed else None,
                 "escalated": i.escalated, "paused_by": i.promise_id}
                for i in sorted(self.invoices.values(), key=lambda i: (i.due_date, i.invoice_id))
                if i.invoice_id in self.open_ids or i.level
            ],
            "notices": list(self.notices),
            "promises": [
                {"promise_id": p.promise_id, "currency": p.currency, "amount": to_text(p.amount, p.currency),
                 "made_on": p.made_on.isoformat(), "promised_date": p.promised_date.isoformat(),
                 "paused_until": p.until.isoformat(), "invoice_ids": list(p.invoice_ids),
                 "status": p.status, "closed_on": p.closed_on.isoformat() if p.closed_on else None}
                for p in self.promises.values()
            ],
            "last_run_on": self.last_run_on.isoformat() if self.last_run_on else None,
        }

    # ----------------------------------------------------------------- ledger facts

    def observe(self, event_type: str, data: Mapping[str, Any], event_id: str | None = None) -> bool:
        """Take in one ``ar.ledger.events`` fact; False when it changed nothing (or was seen before).

        ``customer.upserted`` from ``ar.customers`` is taken like ``ledger.customer_updated``.
        """
        position = ledger_sequence(event_id)
        if position is not None and self.sequence is not None and list(position) <= self.sequence:
            return False
        sequence = list(position) if position is not None else None
        effective = str(data.get("effective_date") or data.get("settled_date") or "") or None
        changed = False
        if event_type in ("ledger.customer_updated", "customer.upserted"):  # ar.ledger.events or ar.customers
            profile = {k: v for k, v in data.items() if k not in ("customer_id", "origin")}
            key = _message_key(data.get("origin"))
            if key in self.profile_keys:
                pass  # this ERP message was applied already, by the other path or earlier
            elif profile != self.profile:
                self._profile_updated(profile=profile, sequence=sequence, key=key)
                changed = True
        elif event_type == "ledger.invoice_opened" and data["invoice_id"] not in self.invoices:
            fields = ("invoice_id", "currency", "amount", "issue_date", "due_date")
            invoice = {k: str(data[k]) for k in fields}
            touched = data.get("invoices", [])
            outcomes = [_outcome(e) for e in touched if e["invoice_id"] != data["invoice_id"]]
            own = next((e for e in touched if e["invoice_id"] == data["invoice_id"]), None)
            invoice["open_amount"] = str(own["open_amount"]) if own else invoice["amount"]
            invoice["status"] = str(own.get("status") or "open") if own else "open"
            self._invoice_opened(invoice=invoice, outcomes=self._changes(outcomes), sequence=sequence)
            changed = True
        elif event_type == "ledger.invoice_disputed":
            if data["dispute_id"] not in self.dispute_invoice:
                self._dispute_opened(dispute_id=data["dispute_id"], invoice_id=data["invoice_id"],
                                     amount=str(data["amount"]), sequence=sequence)
                changed = True
        elif event_type == "ledger.dispute_closed" and data["dispute_id"] in self._open_dispute_ids():
            self._dispute_closed(
                dispute_id=data["dispute_id"], outcome=str(data.get("outcome")), effective_date=effective,
                outcomes=self._changes(_outcome(e) for e in data.get("invoices", [])), sequence=sequence,
            )
            changed = True
        else:
            if event_type == "ledger.invoice_settled":
                entries: Iterable[Mapping[str, Any]] = [data]
            elif event_type.startswith("ledger.") and event_type != "ledger.unapplied_cash_changed":
                entries = data.get("invoices", [])
            else:
                entries = []
            outcomes = self._changes(_outcome(e) for e in entries)
            if outcomes:
                self._open_amounts_changed(outcomes=outcomes, effective_date=effective, sequence=sequence)
                changed = True
        if changed and effective is not None:
            self._judge_kept_promises(date.fromisoformat(effective[:10]))
        return changed

    def _changes(self, outcomes: Iterable[dict[str, str]]) -> list[dict[str, str]]:
        """The outcomes that change a known invoice's open amount or status."""
        changes = []
        for outcome in outcomes:
            invoice = self.invoices.get(outcome["invoice_id"])
            if invoice is not None and (invoice.open_amount != Decimal(outcome["open_amount"])
                                        or invoice.status != outcome["status"]):
                changes.append(outcome)
        return changes

    def _open_dispute_ids(self) -> set[str]:
        return {dispute_id for disputes in self.disputes.values() for dispute_id in disputes}

    def _judge_kept_promises(self, effective: date) -> None:
        for promise in list(self.promises.values()):
            if promise.status != "open" or effective > promise.until:
                continue
            open_now = sum((self.invoices[i].open_amount for i in promise.invoice_ids), ZERO)
            if promise.baseline - open_now >= promise.amount:
                self._promise_kept(promise_id=promise.promise_id, kept_on=effective.isoformat())

    # ----------------------------------------------------------------- commands

    def promise(self, *, made_on: date, promised_date: date, amount: Decimal, policy: Policy,
                currency: str | None = None, invoice_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """Record a promise to pay ``amount`` by ``promised_date``; returns it (JSON-native).

        Pauses the covered invoices until ``promised_date`` plus ``policy.promise_grace_days``.
        The same promise again (same content) is returned unchanged.
        """
        if amount <= ZERO:
            raise InvalidPromise(f"customer {self.customer_id}: a promise must be for a positive amount")
        if promised_date < made_on:
            raise InvalidPromise(
                f"customer {self.customer_id}: promised_date {promised_date} is before {made_on}")
        covered = self._covered(amount, currency, invoice_ids)
        currency = covered[0].currency
        ids = tuple(i.invoice_id for i in covered)
        key = "\x1f".join([self.customer_id, made_on.isoformat(), promised_date.isoformat(),
                           to_text(amount, currency), currency, *ids])
        promise_id = str(uuid5(PROMISE_NAMESPACE, key))
        if promise_id in self.promises:
            return self._promise_view(self.promises[promise_id])
        for invoice in covered:
            if invoice.promise_id is not None:
                raise AlreadyPromised(
                    f"invoice {invoice.invoice_id} is already covered by promise {invoice.promise_id}")
        baseline = sum((i.open_amount for i in covered), ZERO)
        if amount > baseline:
            raise InvalidPromise(
                f"customer {self.customer_id}: promised {amount} exceeds the open amount {baseline} "
                f"of invoices {', '.join(ids)}")
        until = promised_date + timedelta(days=policy.promise_grace_days)
        self._promise_made(promise={
            "promise_id": promise_id, "currency": currency, "amount": to_text(amount, currency),
            "made_on": made_on.isoformat(), "promised_date": promised_date.isoformat(),
            "until": until.isoformat(), "invoice_ids": list(ids), "baseline": str(baseline),
        })
        return self._promise_view(self.promises[promise_id])

    def _covered(self, amount: Decimal, currency: str | None,
                 invoice_ids: Sequence[str] | None) -> list[TrackedInvoice]:
        if invoice_ids:
            covered = []
            for invoice_id in dict.fromkeys(invoice_ids):
                invoice = self.invoices.get(invoice_id)
                if invoice is None:
                    raise UnknownInvoice(f"invoice {invoice_id} is not known for customer {self.customer_id}")
                if invoice_id not in self.open_ids:
                    raise InvoiceNotOpen(f"invoice {invoice_id} has nothing open to promise")
                covered.append(invoice)
            currencies = {i.currency for i in covered} | ({currency} if currency else set())
            if len(currencies) > 1:
                raise CurrencyMismatch(f"a promise is in one currency; invoices are in {sorted(currencies)}")
            return covered
        open_invoices = [self.invoices[i] for i in self.open_ids]
        if currency is None:
            currencies = {i.currency for i in open_invoices}
            if len(currencies) != 1:
                raise InvalidPromise(
                    f"customer {self.customer_id}: name the currency (open invoices in {sorted(currencies)})")
            currency = currencies.pop()
        covered, total = [], ZERO
        for invoice in sorted(open_invoices, key=lambda i: (i.due_date, i.issue_date, i.invoice_id)):
            if invoice.currency != currency or invoice.promise_id is not None or total >= amount:
                continue
            covered.append(invoice)
            total += invoice.open_amount
        if not covered:
            raise InvalidPromise(f"customer {self.customer_id}: no open {currency} invoice to promise")
        return covered

    def run(self, as_of: date, policy: Policy, render: NoticeRenderer | None = None) -> RunResult:
        """The dunning run for ``as_of``: judge promises, then issue at most one notice per currency."""
        if self.last_run_on is not None and as_of <= self.last_run_on:
            return RunResult()
        # A promise past its grace no longer pauses anything (``is_paused``), so the notices
        # can be decided before it is recorded as broken. Everything is decided and rendered
        # before anything is recorded: a failure leaves the account as it was.
        broken = [p.promise_id for p in self.promises.values() if p.status == "open" and as_of > p.until]
        notices = []
        if not self.do_not_dun:
            language = self.language or policy.default_language
            for currency, candidates in sorted(self.candidates(as_of).items()):
                decision = decide(candidates, as_of, policy, self.last_notice_on.get(currency))
                if decision is None:
                    continue
                notice = build_notice(self.customer_id, as_of, currency, decision, policy, language)
                if render is not None:
                    rendered = render(notice, self._customer_context(), policy)
                    notice.update(template=rendered.template, language=rendered.language, text=rendered.text)
                notices.append(notice)
        for promise_id in broken:
            self._promise_broken(promise_id=promise_id, as_of=as_of.isoformat())
        for notice in notices:
            self._notice_issued(notice=notice)
        return RunResult(notices, broken)

    def _customer_context(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "name": self.profile.get("name") or self.customer_id,
                "contacts": self.profile.get("contacts"), "language": self.language}

    @staticmethod
    def _promise_view(promise: Promise) -> dict[str, Any]:
        return {"promise_id": promise.promise_id, "currency": promise.currency,
                "amount": to_text(promise.amount, promise.currency), "made_on": promise.made_on.isoformat(),
                "promised_date": promise.promised_date.isoformat(), "paused_until": promise.until.isoformat(),
                "invoice_ids": list(promise.invoice_ids), "status": promise.status}

    # ----------------------------------------------------------------- events

    def _advance(self, sequence: list[int] | None) -> None:
        if sequence is not None:
            self.sequence = sequence

    def _apply_outcomes(self, outcomes: list[dict[str, str]]) -> None:
        for outcome in outcomes:
            invoice = self.invoices[outcome["invoice_id"]]
            invoice.open_amount = Decimal(outcome["open_amount"])
            invoice.status = outcome["status"]
            if invoice.open_amount > ZERO and invoice.status != "cancelled":
                self.open_ids.add(invoice.invoice_id)
            else:
                self.open_ids.discard(invoice.invoice_id)

    @event("ProfileUpdated")
    def _profile_updated(self, profile: dict[str, Any], sequence: list[int] | None,
                         key: str | None = None) -> None:
        self._advance(sequence)
        self.profile = profile
        if key is not None:
            self.profile_keys.add(key)

    @event("InvoiceOpened")
    def _invoice_opened(self, invoice: dict[str, str], outcomes: list[dict[str, str]],
                        sequence: list[int] | None) -> None:
        self._advance(sequence)
        new = TrackedInvoice(
            invoice_id=invoice["invoice_id"], currency=invoice["currency"], amount=Decimal(invoice["amount"]),
            issue_date=date.fromisoformat(invoice["issue_date"]),
            due_date=date.fromisoformat(invoice["due_date"]),
            open_amount=Decimal(invoice["open_amount"]), status=invoice["status"],
        )
        self.invoices[new.invoice_id] = new
        self._apply_outcomes([{"invoice_id": new.invoice_id, "open_amount": invoice["open_amount"],
                               "status": invoice["status"]}, *outcomes])

    @event("OpenAmountsChanged")
    def _open_amounts_changed(self, outcomes: list[dict[str, str]], effective_date: str | None,
                              sequence: list[int] | None) -> None:
        self._advance(sequence)
        self._apply_outcomes(outcomes)

    @event("DisputeOpened")
    def _dispute_opened(self, dispute_id: str, invoice_id: str, amount: str,
                        sequence: list[int] | None) -> None:
        self._advance(sequence)
        self.dispute_invoice[dispute_id] = invoice_id
        self.disputes.setdefault(invoice_id, {})[dispute_id] = Decimal(amount)

    @event("DisputeClosed")
    def _dispute_closed(self, dispute_id: str, outcome: str, effective_date: str | None,
                        outcomes: list[dict[str, str]], sequence: list[int] | None) -> None:
        self._advance(sequence)
        invoice_id = self.dispute_invoice[dispute_id]
        disputes = self.disputes[invoice_id]
        del disputes[dispute_id]
        if not disputes:
            del self.disputes[invoice_id]
        self._apply_outcomes(outcomes)

    @event("PromiseMade")
    def _promise_made(self, promise: dict[str, Any]) -> None:
        new = Promise(
            promise_id=promise["promise_id"], currency=promise["currency"], amount=Decimal(promise["amount"]),
            made_on=date.fromisoformat(promise["made_on"]),
            promised_date=date.fromisoformat(promise["promised_date"]),
            until=date.fromisoformat(promise["until"]), invoice_ids=tuple(promise["invoice_ids"]),
            baseline=Decimal(promise["baseline"]),
        )
        self.promises[new.promise_id] = new
        for invoice_id in new.invoice_ids:
            self.invoices[invoice_id].promise_id = new.promise_id

    def _close_promise(self, promise_id: str, status: str, on: str) -> None:
        promise = self.promises[promise_id]
        promise.status = status
        promise.closed_on = date.fromisoformat(on)
        for invoice_id in promise.invoice_ids:
            if self.invoices[invoice_id].promise_id == promise_id:
                self.invoices[invoice_id].promise_id = None

    @event("PromiseKept")
    def _promise_kept(self, promise_id: str, kept_on: str) -> None:
        self._close_promise(promise_id, "kept", kept_on)

    @event("PromiseBroken")
    def _promise_broken(self, promise_id: str, as_of: str) -> None:
        self._close_promise(promise_id, "broken", as_of)
        self.last_run_on = date.fromisoformat(as_of)

    @event("NoticeIssued")
    def _notice_issued(self, notice: dict[str, Any]) -> None:
        as_of = date.fromisoformat(notice["as_of"])
        for invoice_id, level in notice["advanced"].items():
            invoice = self.invoices[invoice_id]
            invoice.level = level
            invoice.last_noticed = as_of
        for invoice_id in notice["escalated_invoices"]:
            self.invoices[invoice_id].escalated = True
        self.last_notice_on[notice["currency"]] = as_of
        self.last_run_on = as_of
        self.notices.append({k: notice[k] for k in (
            "notice_id", "as_of", "currency", "level", "level_name", "channel", "total_due", "escalate")})
