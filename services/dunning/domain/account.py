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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.dunning.domain.collectors import AssignmentRule, Portfolio, RuleMatch, first_match
from services.dunning.domain.decision import Candidate, decide, earliest_action
from services.dunning.domain.errors import (
    AlreadyPromised,
    CurrencyMismatch,
    InvalidConfirmation,
    InvalidPlan,
    InvalidPromise,
    InvoiceNotOpen,
    PlanConflict,
    PlanNotRequested,
    SelfApproval,
    TaskNotOpen,
    UnknownInvoice,
    UnknownPlan,
    UnknownStatement,
    UnknownTask,
)
from services.dunning.domain.notice import REMINDER, NoticeRenderer, build_notice, build_reminder
from services.dunning.domain.plans import OPEN as PLAN_OPEN
from services.dunning.domain.plans import Instalment, PaymentPlan, instalments_problem
from services.dunning.domain.policy import DEFAULT_POLICY_NAME, Policy
from services.dunning.domain.statements import (
    StatementContext,
    StatementFigures,
    StatementRender,
    statements_due,
)
from services.dunning.domain.work import (
    CONTACT_KINDS,
    CONTACT_OUTCOMES,
    Task,
    activity_id,
    task_id,
    task_kind,
)
from shared.ledger_feed import Fact, RiskGraded, ledger_sequence
from shared.money import ZERO, to_text
from shared.open_items import MirrorChange, OpenItem, OpenItems

ACCOUNT_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:customer")
PROMISE_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:promise")

# the ledger's facts of a payment or credit note applied to invoices (a prepayment too, when
# its order's invoice takes it)
PAYMENT_FACTS = frozenset({"ledger.payment_applied", "ledger.prepayment_applied"})

# Countries whose customers get German notices when their profile names no language.
_GERMAN_SPEAKING = {"DE", "AT", "LI"}


@lru_cache(maxsize=1 << 16)  # a uuid5 costs ≈ 3.5 µs, and every fact looks its account up
def dunning_account_id(customer_id: str) -> UUID:
    """Deterministic aggregate id: the dunning account of customer X is found without an index."""
    return uuid5(ACCOUNT_NAMESPACE, customer_id)


@dataclass(slots=True)
class InvoiceDunning:
    """What dunning did to an invoice (its amounts are the ledger's: ``OpenItems``)."""

    level: int = 0  # the last level it was dunned at
    last_noticed: date | None = None
    escalated: bool = False
    promise_id: str | None = None  # the open promise covering it
    plan_id: str | None = None  # the requested or active payment plan covering it


_NOT_DUNNED = InvoiceDunning()  # read only: what an invoice never dunned shows


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
    broken_plans: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.notices or self.broken_promises or self.broken_plans)


def _message_key(origin: object) -> str | None:
    """The ERP message's idempotency key (source, id) from an ``origin`` member, if any."""
    if isinstance(origin, Mapping) and origin.get("source") and origin.get("id"):
        return f"{origin['source']}\x1f{origin['id']}"
    return None


class DunningAccount(Aggregate):
    """One customer's dunning: the unit of consistency of a run."""

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return dunning_account_id(customer_id)

    @event("Opened")
    def __init__(self, customer_id: str, follows_unapplied: bool = False) -> None:
        self.customer_id = customer_id
        # the service opens accounts that follow the customer's unapplied cash (for statements);
        # one opened before it did (its Opened event has no such argument) never takes it, so
        # it never holds part of that history
        self.follows_unapplied = follows_unapplied
        self.profile: dict[str, Any] = {}
        self.items = OpenItems()  # the ledger's facts: invoices, open amounts, disputes
        self.dunned: dict[str, InvoiceDunning] = {}  # by invoice id
        self.promises: dict[str, Promise] = {}
        self.notices: list[dict[str, Any]] = []  # summaries; the full notice is in its event
        self.last_notice_on: dict[str, date] = {}  # per currency
        self.last_run_on: date | None = None
        # (source, id) of the ERP customer.upserted messages applied: the same message reaches
        # dunning twice (ar.customers and the ledger's ledger.customer_updated), maybe late.
        self.profile_keys: set[str] = set()
        self.risk_grade: str | None = None  # credit's, for the assignment rules
        self.credit_sequence: list[int] | None = None  # the last credit event (version, index) taken
        # who works the customer: {collector_id, by: rule|manual, rule, rules_version, actor}
        self.assignment: dict[str, Any] | None = None
        self.tasks: dict[str, Task] = {}
        self.activities: list[dict[str, Any]] = []  # as logged, in order
        self.plans: dict[str, PaymentPlan] = {}
        # statements by id: {currency, as_of, closing_balance, confirmation_requested, response}
        self.statements: dict[str, dict[str, Any]] = {}
        self.confirmation_asked: dict[str, date] = {}  # per currency: the last statement that asked

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

    def marks(self, invoice_id: str) -> InvoiceDunning:
        """What dunning did to the invoice (read only)."""
        return self.dunned.get(invoice_id, _NOT_DUNNED)

    def is_paused(self, invoice_id: str, as_of: date, ending: frozenset[str] = frozenset()) -> bool:
        """Paused by an open promise not yet past its grace, or by a plan requested or active
        (and not among the ``ending`` ones a run is about to break)."""
        marks = self.marks(invoice_id)
        if marks.plan_id is not None and marks.plan_id not in ending:
            return True
        return marks.promise_id is not None and as_of <= self.promises[marks.promise_id].until

    def candidates(self, as_of: date, ending: frozenset[str] = frozenset()) -> dict[str, list[Candidate]]:
        """The invoices a run on ``as_of`` may dun, per currency (``ending``: plans it breaks)."""
        by_currency: dict[str, list[Candidate]] = {}
        for invoice in self.items.open_items():
            marks = self.marks(invoice.invoice_id)
            if marks.escalated or invoice.issue_date > as_of \
                    or self.is_paused(invoice.invoice_id, as_of, ending):
                continue
            dunnable = self.items.undisputed_amount(invoice)
            if dunnable <= ZERO:
                continue
            by_currency.setdefault(invoice.currency, []).append(
                Candidate(invoice.invoice_id, invoice.due_date, dunnable, marks.level))
        return by_currency

    def wake_date(self, policy: Policy) -> date | None:
        """A date before which a run cannot act for this customer unless new facts arrive.

        None when nothing is pending. A service may store it to pre-filter a run's candidates.
        """
        dates = [promise.until + timedelta(days=1) for promise in self.promises.values()
                 if promise.status == "open"]
        dates += [day for plan in self.plans.values()
                  if (day := plan.wake_date(policy.plan_grace_days, policy.instalment_reminder_days,
                                            self.covered_open(plan))) is not None]
        if not self.do_not_dun:
            for invoice in self.items.open_items():
                marks = self.marks(invoice.invoice_id)
                if marks.escalated or marks.plan_id is not None \
                        or self.items.undisputed_amount(invoice) <= ZERO:
                    continue
                candidate = Candidate(invoice.invoice_id, invoice.due_date, invoice.open_amount, marks.level)
                earliest = earliest_action(candidate, policy, self.last_notice_on.get(invoice.currency))
                if earliest is None:
                    continue
                earliest = max(earliest, invoice.issue_date)
                if marks.promise_id is not None:
                    earliest = max(earliest, self.promises[marks.promise_id].until + timedelta(days=1))
                dates.append(earliest)
        if not dates:
            return None
        soonest = min(dates)
        if self.last_run_on is not None:
            soonest = max(soonest, self.last_run_on + timedelta(days=1))
        return soonest

    def covered_open(self, plan: PaymentPlan) -> Decimal:
        """What is still open of the invoices a plan covers."""
        invoices = self.items.invoices
        return sum((invoices[i].open_amount for i in plan.invoice_ids if i in invoices), ZERO)

    def plan_view(self, plan_id: str) -> dict[str, Any] | None:
        plan = self.plans.get(plan_id)
        return None if plan is None else plan.view(self.customer_id, self.covered_open(plan))

    @property
    def collector_id(self) -> str | None:
        return self.assignment["collector_id"] if self.assignment else None

    @property
    def assigned_by(self) -> str | None:
        """``rule`` or ``manual`` while a collector works the customer, else None."""
        return self.assignment["by"] if self.assignment and self.assignment["collector_id"] else None

    @property
    def last_contact_on(self) -> date | None:
        """The latest day the customer was reached or written to: a call, an e-mail, a visit
        or a letter logged, or a task done with an outcome other than no answer or a wrong
        contact (a notice by the runs is not counted)."""
        days = [date.fromisoformat(a["occurred_on"]) for a in self.activities if a["kind"] in CONTACT_KINDS]
        days += [t.completed_on for t in self.tasks.values()
                 if t.completed_on is not None and t.outcome in CONTACT_OUTCOMES]
        return max(days, default=None)

    def portfolio(self) -> Portfolio:
        """What the assignment rules see of this customer."""
        attributes = frozenset(
            (str(name), str(value)) for invoice in self.items.invoices.values() if invoice.attributes
            for name, value in invoice.attributes.items() if isinstance(value, str | int | bool))
        return Portfolio(segment=self.profile.get("segment"), country=self.profile.get("country"),
                         risk_grade=self.risk_grade, open_amounts=self.items.receivables,
                         attributes=attributes)

    def view(self) -> dict[str, Any]:
        """The customer's dunning state, JSON-native (``GET /customers/{id}/dunning``)."""
        return {
            "customer_id": self.customer_id,
            "policy": self.policy_name,
            "do_not_dun": self.do_not_dun,
            "collector_id": self.collector_id,
            "assigned_by": self.assigned_by,
            "invoices": [
                {"invoice_id": i.invoice_id, "currency": i.currency, "due_date": i.due_date.isoformat(),
                 "open_amount": to_text(i.open_amount, i.currency),
                 "disputed_amount": to_text(self.items.disputed_amount(i), i.currency),
                 "level": m.level, "last_noticed": m.last_noticed.isoformat() if m.last_noticed else None,
                 "escalated": m.escalated, "paused_by": m.promise_id}
                for i in sorted(self.items.invoices.values(), key=lambda i: (i.due_date, i.invoice_id))
                if (m := self.marks(i.invoice_id)).level or i.is_open
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

    def observe(self, fact: Fact) -> bool:
        """Take in one ``ar.ledger.events`` fact; False when it changed nothing (or was seen before).

        ``customer.upserted`` from ``ar.customers`` is taken like ``ledger.customer_updated``.
        Unapplied cash is left to the ledger and credit: a notice asks for invoices.
        """
        if isinstance(fact.body, RiskGraded):
            return self._observe_grade(fact.body.grade, ledger_sequence(fact.event_id, "credit"))
        changed = self.items.take(fact, self._observe_profile, self._record)
        effective = fact.effective_date
        if changed and effective is not None:
            self._judge_kept_promises(date.fromisoformat(effective[:10]))
            self._judge_settled_plans(date.fromisoformat(effective[:10]), fact.event_type)
        return changed

    def _observe_grade(self, grade: str | None, sequence: tuple[int, int] | None) -> bool:
        """Credit's grade of the customer; a message at or below the last one taken (credit's
        order of the customer's events) is a redelivery."""
        seen = self.credit_sequence
        if sequence is not None and seen is not None and list(sequence) <= seen:
            return False
        if grade == self.risk_grade:
            return False
        self._risk_graded(grade=grade, sequence=list(sequence) if sequence else None)
        return True

    def _observe_profile(self, fact: Fact, sequence: list[int] | None) -> bool:
        profile = {k: v for k, v in fact.data.items() if k not in ("customer_id", "origin")}
        key = _message_key(fact.data.get("origin"))
        if key in self.profile_keys or profile == self.profile:
            return False  # applied already (by the other path or earlier), or nothing new
        self._profile_updated(profile=profile, sequence=sequence, key=key)
        return True

    def _record(self, fact: Fact, change: MirrorChange, sequence: list[int] | None) -> bool:
        if change.kind == "unapplied_cash_changed":  # (a notice asks for invoices; a statement shows it)
            if not self.follows_unapplied:
                return False
            self._unapplied_cash_changed(**change.payload, effective_date=fact.effective_date,
                                         sequence=sequence)
        elif change.kind == "open_amounts_changed":  # (which fact: a payment shows as one on the timeline)
            self._open_amounts_changed(**change.payload, sequence=sequence, fact_type=fact.event_type)
        else:
            getattr(self, f"_{change.kind}")(**change.payload, sequence=sequence)
        return True

    def _judge_kept_promises(self, effective: date) -> None:
        for promise in list(self.promises.values()):
            if promise.status != "open" or effective > promise.until:
                continue
            open_now = sum((self.items.invoices[i].open_amount for i in promise.invoice_ids), ZERO)
            if promise.baseline - open_now >= promise.amount:
                self._promise_kept(promise_id=promise.promise_id, kept_on=effective.isoformat())

    def _judge_settled_plans(self, effective: date, fact_type: str) -> None:
        """A plan whose invoices have nothing open any more: completed when a payment did it
        and the plan was agreed, else cancelled (settled otherwise, or before a decision)."""
        for plan in list(self.plans.values()):
            if plan.status not in PLAN_OPEN or self.covered_open(plan) > ZERO:
                continue
            if plan.status == "active" and fact_type in PAYMENT_FACTS:
                self._plan_completed(plan_id=plan.plan_id, on=effective.isoformat())
            else:
                self._plan_cancelled(plan_id=plan.plan_id, on=effective.isoformat())

    # ----------------------------------------------------------------- assignment

    def assign_by_rules(self, rules: Sequence[AssignmentRule], version: int) -> bool:
        """The first matching rule's collector works the customer (none if no rule matches),
        unless one was assigned by hand; True when that changed the assignment."""
        if self.assignment is None and not rules:
            return False  # (no rules, nobody assigned: nothing to work out)
        if self.assignment is not None and self.assignment["by"] == "manual":
            return False
        return self._assign_from(first_match(rules, version, self.portfolio()), actor=None)

    def assign_by_hand(self, collector_id: str, actor: str) -> bool:
        """``collector_id`` works the customer whatever the rules say, until ``release_by_hand``."""
        if self.assignment is not None and self.assignment["by"] == "manual" \
                and self.assignment["collector_id"] == collector_id:
            return False
        self._collector_assigned(collector_id=collector_id, by="manual", rule=None, rules_version=None,
                                 actor=actor)
        return True

    def release_by_hand(self, actor: str, rules: Sequence[AssignmentRule], version: int) -> bool:
        """The manual assignment removed: the rules assign the customer again."""
        if self.assignment is None or self.assignment["by"] != "manual":
            return False
        match = first_match(rules, version, self.portfolio())
        self._assign_from(match, actor=actor, force=True)
        return True

    def _assign_from(self, match: RuleMatch | None, *, actor: str | None, force: bool = False) -> bool:
        current = self.assignment or {"collector_id": None, "rule": None}
        found = (match.collector_id, match.rule) if match else (None, None)
        if not force and (current["collector_id"], current["rule"]) == found:
            return False  # (a new version of the rules that assigns the same: no news)
        self._collector_assigned(collector_id=found[0], by="rule", rule=found[1],
                                 rules_version=match.version if match else None, actor=actor)
        return True

    @event("RiskGraded")
    def _risk_graded(self, grade: str | None, sequence: list[int] | None) -> None:
        self.risk_grade = grade
        if sequence is not None:
            self.credit_sequence = sequence

    @event("CollectorAssigned")
    def _collector_assigned(self, collector_id: str | None, by: str, rule: int | None,
                            rules_version: int | None, actor: str | None) -> None:
        self.assignment = {"collector_id": collector_id, "by": by, "rule": rule,
                           "rules_version": rules_version, "actor": actor}

    # ----------------------------------------------------------------- work

    def complete_task(self, task_id: str, *, outcome: str, note: str | None, completed_on: date,
                      actor: str) -> dict[str, Any]:
        """A collector's task done, with its outcome; the same completion again changes nothing."""
        task = self.tasks.get(task_id)
        if task is None:
            raise UnknownTask(f"customer {self.customer_id} has no task {task_id}", field="task_id")
        if task.status == "done":
            if (task.outcome, task.note, task.completed_on) == (outcome, note, completed_on):
                return task.view(self.customer_id)
            raise TaskNotOpen(f"task {task_id} was completed on {task.completed_on} ({task.outcome})")
        self._task_completed(task_id=task_id, outcome=outcome, note=note,
                             completed_on=completed_on.isoformat(), actor=actor)
        return task.view(self.customer_id)

    def log_activity(self, *, kind: str, outcome: str | None, note: str, occurred_on: date,
                     collector_id: str | None, actor: str) -> dict[str, Any]:
        """A contact outside the runs (by default the customer's collector's); logged once."""
        activity = {"kind": kind, "outcome": outcome, "note": note, "occurred_on": occurred_on.isoformat(),
                    "collector_id": collector_id or self.collector_id}
        activity["activity_id"] = activity_id(self.customer_id, activity)
        known = next((a for a in self.activities if a["activity_id"] == activity["activity_id"]), None)
        if known is not None:
            return {"customer_id": self.customer_id, **known}
        self._activity_logged(activity={**activity, "logged_by": actor})
        return {"customer_id": self.customer_id, **self.activities[-1]}

    @event("TaskCreated")
    def _task_created(self, task_id: str, notice_id: str, kind: str, due_on: str,
                      collector_id: str | None) -> None:
        self.tasks[task_id] = Task(task_id, notice_id, kind, date.fromisoformat(due_on), collector_id)

    @event("TaskCompleted")
    def _task_completed(self, task_id: str, outcome: str, note: str | None, completed_on: str,
                        actor: str) -> None:
        task = self.tasks[task_id]
        task.status, task.outcome, task.note = "done", outcome, note
        task.completed_on, task.completed_by = date.fromisoformat(completed_on), actor

    @event("ActivityLogged")
    def _activity_logged(self, activity: dict[str, Any]) -> None:
        self.activities.append(activity)

    # ----------------------------------------------------------------- commands

    def promise(self, *, made_on: date, promised_date: date, amount: Decimal, policy: Policy,
                currency: str | None = None, invoice_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """Record a promise to pay ``amount`` by ``promised_date``; returns it (JSON-native).

        Pauses the covered invoices until ``promised_date`` plus ``policy.promise_grace_days``.
        The same promise again (same content) is returned unchanged.
        """
        if amount <= ZERO:
            raise InvalidPromise(f"customer {self.customer_id}: a promise must be for a positive amount",
                                 field="amount")
        if promised_date < made_on:
            raise InvalidPromise(
                f"customer {self.customer_id}: promised_date {promised_date} is before {made_on}",
                field="promised_date")
        covered = self._covered(amount, currency, invoice_ids)
        currency = covered[0].currency
        ids = tuple(i.invoice_id for i in covered)
        key = "\x1f".join([self.customer_id, made_on.isoformat(), promised_date.isoformat(),
                           to_text(amount, currency), currency, *ids])
        promise_id = str(uuid5(PROMISE_NAMESPACE, key))
        if promise_id in self.promises:
            return self._promise_view(self.promises[promise_id])
        for invoice in covered:
            if (covering := self.marks(invoice.invoice_id).promise_id) is not None:
                raise AlreadyPromised(
                    f"invoice {invoice.invoice_id} is already covered by promise {covering}",
                    field="invoice_ids")
        baseline = sum((i.open_amount for i in covered), ZERO)
        if amount > baseline:
            raise InvalidPromise(
                f"customer {self.customer_id}: promised {amount} exceeds the open amount {baseline} "
                f"of invoices {', '.join(ids)}", field="amount")
        until = promised_date + timedelta(days=policy.promise_grace_days)
        self._promise_made(promise={
            "promise_id": promise_id, "currency": currency, "amount": to_text(amount, currency),
            "made_on": made_on.isoformat(), "promised_date": promised_date.isoformat(),
            "until": until.isoformat(), "invoice_ids": list(ids), "baseline": str(baseline),
        })
        return self._promise_view(self.promises[promise_id])

    def _covered(self, amount: Decimal, currency: str | None,
                 invoice_ids: Sequence[str] | None) -> list[OpenItem]:
        if invoice_ids:
            covered = self._open_named(invoice_ids)
            currencies = {i.currency for i in covered} | ({currency} if currency else set())
            if len(currencies) > 1:
                raise CurrencyMismatch(f"a promise is in one currency; invoices are in {sorted(currencies)}",
                                       field="currency")
            return covered
        open_invoices = self.items.open_items()
        if currency is None:
            currencies = {i.currency for i in open_invoices}
            if len(currencies) != 1:
                raise InvalidPromise(
                    f"customer {self.customer_id}: name the currency (open invoices in {sorted(currencies)})",
                    field="currency")
            currency = currencies.pop()
        covered, total = [], ZERO
        for invoice in sorted(open_invoices, key=lambda i: (i.due_date, i.issue_date, i.invoice_id)):
            if invoice.currency != currency or self.marks(invoice.invoice_id).promise_id is not None \
                    or total >= amount:
                continue
            covered.append(invoice)
            total += invoice.open_amount
        if not covered:
            raise InvalidPromise(f"customer {self.customer_id}: no open {currency} invoice to promise",
                                 field="amount")
        return covered

    def request_plan(self, *, plan_id: str, currency: str, invoice_ids: Sequence[str] | None,
                     instalments: Sequence[Instalment], requested_on: date, reason: str,
                     actor: str) -> dict[str, Any]:
        """A payment plan asked for (``requested``: its invoices are not dunned until it ends).

        Without ``invoice_ids`` it covers every open overdue invoice of the currency no other
        plan covers. The same request again answers the plan as it stands.
        """
        known = self.plans.get(plan_id)
        if known is not None:
            same_invoices = not invoice_ids or tuple(dict.fromkeys(invoice_ids)) == known.invoice_ids
            if same_invoices and (currency, tuple(instalments), requested_on, reason) == (
                    known.currency, known.instalments, known.requested_on, known.reason):
                return known.view(self.customer_id, self.covered_open(known))
            raise PlanConflict(f"plan {plan_id} was asked for already, with other terms", field="plan_id")
        covered = self._plan_invoices(currency, invoice_ids, requested_on)
        total = sum((i.open_amount for i in covered), ZERO)
        problem = instalments_problem(instalments, total, requested_on, currency)
        if problem is not None:
            raise InvalidPlan(f"plan {plan_id}: {problem}", field="instalments")
        self._plan_requested(plan={
            "plan_id": plan_id, "currency": currency, "invoice_ids": [i.invoice_id for i in covered],
            "instalments": [{"due_date": i.due_date.isoformat(), "amount": to_text(i.amount, currency)}
                            for i in instalments],
            "requested_on": requested_on.isoformat(), "reason": reason, "requested_by": actor})
        plan = self.plans[plan_id]
        return plan.view(self.customer_id, self.covered_open(plan))

    def _plan_invoices(self, currency: str, invoice_ids: Sequence[str] | None,
                       requested_on: date) -> list[OpenItem]:
        if not invoice_ids:
            covered = sorted((i for i in self.items.open_items()
                              if i.currency == currency and i.due_date < requested_on
                              and self.marks(i.invoice_id).plan_id is None),
                             key=lambda i: (i.due_date, i.invoice_id))
            if not covered:
                raise InvalidPlan(f"customer {self.customer_id} has no open overdue {currency} invoice "
                                  f"on {requested_on} that no plan covers", field="invoice_ids")
            return covered
        covered = self._open_named(invoice_ids)
        for invoice in covered:
            if invoice.currency != currency:
                raise CurrencyMismatch(
                    f"invoice {invoice.invoice_id} is in {invoice.currency}, the plan in {currency}",
                    field="currency")
            if (planned := self.marks(invoice.invoice_id).plan_id) is not None:
                raise PlanConflict(f"invoice {invoice.invoice_id} is covered by plan {planned}",
                                   field="invoice_ids")
        return covered

    def _open_named(self, invoice_ids: Sequence[str]) -> list[OpenItem]:
        """The invoices named (each once), every one known and open."""
        named = []
        for invoice_id in dict.fromkeys(invoice_ids):
            invoice = self.items.invoices.get(invoice_id)
            if invoice is None:
                raise UnknownInvoice(f"invoice {invoice_id} is not known for customer {self.customer_id}",
                                     field="invoice_ids")
            if not invoice.is_open:
                raise InvoiceNotOpen(f"invoice {invoice_id} has nothing open", field="invoice_ids")
            named.append(invoice)
        return named

    def approve_plan(self, plan_id: str, *, approved_on: date, actor: str) -> dict[str, Any]:
        """The plan agreed (``active``) by someone other than who asked for it."""
        plan = self._plan(plan_id)
        if plan.status == "active" and (plan.decided_on, plan.decided_by) == (approved_on, actor):
            return plan.view(self.customer_id, self.covered_open(plan))
        self._decidable(plan)
        if actor == plan.requested_by:
            raise SelfApproval(f"plan {plan_id} was asked for by {actor}: someone else must approve it")
        if approved_on < plan.requested_on:
            raise InvalidPlan(f"plan {plan_id} was asked for on {plan.requested_on}, after {approved_on}",
                              field="approved_on")
        self._plan_agreed(plan_id=plan_id, on=approved_on.isoformat(), actor=actor)
        return plan.view(self.customer_id, self.covered_open(plan))

    def reject_plan(self, plan_id: str, *, reason: str, rejected_on: date, actor: str) -> dict[str, Any]:
        """The plan refused: its invoices are dunned again from the next run."""
        plan = self._plan(plan_id)
        if plan.status == "rejected" and plan.rejection == reason:
            return plan.view(self.customer_id, self.covered_open(plan))
        self._decidable(plan)
        on = max(rejected_on, plan.requested_on)
        self._plan_rejected(plan_id=plan_id, reason=reason, on=on.isoformat(), actor=actor)
        return plan.view(self.customer_id, self.covered_open(plan))

    def _plan(self, plan_id: str) -> PaymentPlan:
        plan = self.plans.get(plan_id)
        if plan is None:
            raise UnknownPlan(f"customer {self.customer_id} has no payment plan {plan_id}", field="plan_id")
        return plan

    @staticmethod
    def _decidable(plan: PaymentPlan) -> None:
        if plan.status != "requested":
            raise PlanNotRequested(f"plan {plan.plan_id} is {plan.status}: only a requested plan is decided")

    def statement_context(self) -> StatementContext:
        return StatementContext(self.customer_id, self.profile.get("name") or self.customer_id, self.language,
                                self.do_not_dun, frozenset(self.statements), dict(self.confirmation_asked))

    def issue_statements(self, as_of: date, figures: Sequence[StatementFigures], policy: Policy,
                         render: StatementRender | None = None) -> list[dict[str, Any]]:
        """The statements of a statement run of ``as_of`` (``statements.statements_due``), recorded.

        (A statement run over the whole book records the same events without loading the
        accounts: ``DunningApplication.statement_chunk``.)
        """
        issued = statements_due(self.statement_context(), as_of, figures, policy, render)
        for statement in issued:
            self._statement_issued(statement=statement)
        return issued

    def respond_to_statement(self, statement_id: str, *, response: str, balance: Decimal | None, note: str,
                             responded_on: date, actor: str) -> dict[str, Any]:
        """The customer's answer to a statement: its balance confirmed, or disputed with the
        balance it sees (required) and a note. The same answer again records nothing."""
        statement = self.statements.get(statement_id)
        if statement is None:
            raise UnknownStatement(f"customer {self.customer_id} has no statement {statement_id}",
                                   field="statement_id")
        currency = statement["currency"]
        if response == "disputed" and balance is None:
            raise InvalidConfirmation("a disputed balance names the balance the customer sees",
                                      field="balance")
        if responded_on < date.fromisoformat(statement["as_of"]):
            raise InvalidConfirmation(f"statement {statement_id} was issued on {statement['as_of']}",
                                      field="responded_on")
        ours = Decimal(statement["closing_balance"])
        theirs = ours if balance is None else balance
        answer = {"statement_id": statement_id, "currency": currency, "response": response,
                  "statement_balance": statement["closing_balance"], "balance": to_text(theirs, currency),
                  "difference": to_text(theirs - ours, currency), "note": note,
                  "responded_on": responded_on.isoformat()}
        if statement.get("response") != answer:
            self._statement_answered(answer={**answer, "recorded_by": actor})
        return {"customer_id": self.customer_id, **answer}

    @property
    def balance_disputed_on(self) -> date | None:
        """The day the customer last disputed a statement's balance, unless it confirmed a
        later statement in that currency since."""
        latest: dict[str, tuple[str, dict[str, Any]]] = {}
        for statement in self.statements.values():
            answer = statement.get("response")
            if answer is not None and (statement["currency"] not in latest
                                       or statement["as_of"] > latest[statement["currency"]][0]):
                latest[statement["currency"]] = (statement["as_of"], answer)
        disputed = [date.fromisoformat(answer["responded_on"]) for _, answer in latest.values()
                    if answer["response"] == "disputed"]
        return max(disputed, default=None)

    def run(self, as_of: date, policy: Policy, render: NoticeRenderer | None = None) -> RunResult:
        """The dunning run for ``as_of``: judge promises and plans, remind of instalments, then
        issue at most one notice per currency."""
        if self.last_run_on is not None and as_of <= self.last_run_on:
            return RunResult()
        # A promise past its grace no longer pauses anything (``is_paused``), nor does a plan
        # this run breaks (``ending``), so the notices can be decided before either is
        # recorded. Everything is decided and rendered before anything is recorded: a failure
        # leaves the account as it was.
        broken = [p.promise_id for p in self.promises.values() if p.status == "open" and as_of > p.until]
        missed = {plan.plan_id: number for plan in self.plans.values() if plan.status == "active"
                  and (number := plan.missed(as_of, policy.plan_grace_days, self.covered_open(plan)))}
        notices = []
        if not self.do_not_dun:
            language = self.language or policy.default_language
            for currency, candidates in sorted(self.candidates(as_of, frozenset(missed)).items()):
                decision = decide(candidates, as_of, policy, self.last_notice_on.get(currency))
                if decision is None:
                    continue
                notice = build_notice(self.customer_id, as_of, currency, decision, policy, language)
                notices.append(self._rendered(notice, policy, render))
            notices += [self._rendered(reminder, policy, render)
                        for reminder in self._reminders(as_of, policy, language, frozenset(missed))]
        for promise_id in broken:
            self._promise_broken(promise_id=promise_id, as_of=as_of.isoformat())
        for plan_id, number in missed.items():
            self._plan_broken(plan_id=plan_id, as_of=as_of.isoformat(), instalment=number)
        for notice in notices:
            if notice["kind"] == REMINDER:
                self._instalment_reminded(notice=notice)
                continue
            self._notice_issued(notice=notice)
            kind = task_kind(notice["channels"])
            if kind is not None and task_id(notice["notice_id"]) not in self.tasks:
                self._task_created(task_id=task_id(notice["notice_id"]), notice_id=notice["notice_id"],
                                   kind=kind, due_on=notice["as_of"], collector_id=self.collector_id)
        return RunResult(notices, broken, list(missed))

    def _rendered(self, notice: dict[str, Any], policy: Policy,
                  render: NoticeRenderer | None) -> dict[str, Any]:
        if render is not None:
            rendered = render(notice, self._customer_context(), policy)
            notice.update(template=rendered.template, language=rendered.language, text=rendered.text)
        return notice

    def _reminders(self, as_of: date, policy: Policy, language: str,
                   ending: frozenset[str]) -> list[dict[str, Any]]:
        """The instalment reminders a run of ``as_of`` sends, one per instalment coming due."""
        reminders = []
        for plan in self.plans.values():
            if plan.status != "active" or plan.plan_id in ending:
                continue
            open_now = self.covered_open(plan)
            for number in plan.reminders(as_of, policy.instalment_reminder_days, open_now):
                lines = [{"invoice_id": i.invoice_id, "open_amount": to_text(i.open_amount, i.currency),
                          "days_past_due": (as_of - i.due_date).days, "due_date": i.due_date.isoformat(),
                          "level": self.marks(i.invoice_id).level, "interest": to_text(ZERO, i.currency)}
                         for invoice_id in plan.invoice_ids
                         if (i := self.items.invoices[invoice_id]).is_open]
                reminders.append(build_reminder(self.customer_id, as_of, plan, number,
                                                plan.unpaid(number, open_now), lines, policy, language))
        return reminders

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

    @event("ProfileUpdated")
    def _profile_updated(self, profile: dict[str, Any], sequence: list[int] | None,
                         key: str | None = None) -> None:
        self.items.advance(sequence)
        self.profile = profile
        if key is not None:
            self.profile_keys.add(key)

    @event("InvoiceOpened")
    def _invoice_opened(self, invoice: dict[str, str], outcomes: list[dict[str, str]],
                        sequence: list[int] | None) -> None:
        self.items.open_invoice(invoice, outcomes, sequence)

    @event("OpenAmountsChanged")
    def _open_amounts_changed(self, outcomes: list[dict[str, str]], effective_date: str | None,
                              sequence: list[int] | None, fact_type: str | None = None) -> None:
        self.items.change_open_amounts(outcomes, sequence)

    @event("UnappliedCashChanged")
    def _unapplied_cash_changed(self, currency: str, change: str, effective_date: str | None,
                                sequence: list[int] | None) -> None:
        self.items.change_unapplied(currency, change, sequence)

    @event("DisputeOpened")
    def _dispute_opened(self, dispute_id: str, invoice_id: str, amount: str,
                        sequence: list[int] | None) -> None:
        self.items.open_dispute(dispute_id, invoice_id, amount, sequence)

    @event("DisputeClosed")
    def _dispute_closed(self, dispute_id: str, outcome: str, effective_date: str | None,
                        outcomes: list[dict[str, str]], sequence: list[int] | None) -> None:
        self.items.close_dispute(dispute_id, outcomes, sequence)

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
            self.dunned.setdefault(invoice_id, InvoiceDunning()).promise_id = new.promise_id

    def _close_promise(self, promise_id: str, status: str, on: str) -> None:
        promise = self.promises[promise_id]
        promise.status = status
        promise.closed_on = date.fromisoformat(on)
        for invoice_id in promise.invoice_ids:
            if self.marks(invoice_id).promise_id == promise_id:
                self.dunned[invoice_id].promise_id = None

    @event("PromiseKept")
    def _promise_kept(self, promise_id: str, kept_on: str) -> None:
        self._close_promise(promise_id, "kept", kept_on)

    @event("PromiseBroken")
    def _promise_broken(self, promise_id: str, as_of: str) -> None:
        self._close_promise(promise_id, "broken", as_of)
        self.last_run_on = date.fromisoformat(as_of)

    @event("PlanRequested")
    def _plan_requested(self, plan: dict[str, Any]) -> None:
        new = PaymentPlan.from_record(plan)
        self.plans[new.plan_id] = new
        for invoice_id in new.invoice_ids:
            self.dunned.setdefault(invoice_id, InvoiceDunning()).plan_id = new.plan_id

    @event("PlanAgreed")
    def _plan_agreed(self, plan_id: str, on: str, actor: str) -> None:
        plan = self.plans[plan_id]
        plan.status, plan.decided_on, plan.decided_by = "active", date.fromisoformat(on), actor

    @event("PlanRejected")
    def _plan_rejected(self, plan_id: str, reason: str, on: str, actor: str) -> None:
        plan = self.plans[plan_id]
        plan.decided_on, plan.decided_by, plan.rejection = date.fromisoformat(on), actor, reason
        self._end_plan(plan_id, "rejected", None)

    @event("PlanBroken")
    def _plan_broken(self, plan_id: str, as_of: str, instalment: int) -> None:
        self.plans[plan_id].broken_instalment = instalment
        self._end_plan(plan_id, "broken", as_of)
        self.last_run_on = date.fromisoformat(as_of)

    @event("PlanCompleted")
    def _plan_completed(self, plan_id: str, on: str) -> None:
        self._end_plan(plan_id, "completed", on)

    @event("PlanCancelled")
    def _plan_cancelled(self, plan_id: str, on: str) -> None:
        self._end_plan(plan_id, "cancelled", on)

    def _end_plan(self, plan_id: str, status: str, on: str | None) -> None:
        plan = self.plans[plan_id]
        plan.status = status
        plan.closed_on = date.fromisoformat(on) if on else None
        for invoice_id in plan.invoice_ids:
            if self.marks(invoice_id).plan_id == plan_id:
                self.dunned[invoice_id].plan_id = None

    @event("StatementIssued")
    def _statement_issued(self, statement: dict[str, Any]) -> None:
        self.statements[statement["statement_id"]] = {
            k: statement[k] for k in ("statement_id", "currency", "as_of", "period_to", "closing_balance",
                                      "confirmation_requested")}
        if statement["confirmation_requested"]:
            self.confirmation_asked[statement["currency"]] = date.fromisoformat(statement["as_of"])

    @event("StatementAnswered")
    def _statement_answered(self, answer: dict[str, Any]) -> None:
        self.statements[answer["statement_id"]]["response"] = {
            k: v for k, v in answer.items() if k != "recorded_by"}

    @event("InstalmentReminded")
    def _instalment_reminded(self, notice: dict[str, Any]) -> None:
        self.plans[notice["plan_id"]].reminded.add(notice["instalment"])
        self.last_run_on = date.fromisoformat(notice["as_of"])
        self.notices.append({k: notice[k] for k in (
            "notice_id", "as_of", "currency", "level", "level_name", "channel", "total_due", "escalate")})

    @event("NoticeIssued")
    def _notice_issued(self, notice: dict[str, Any]) -> None:
        as_of = date.fromisoformat(notice["as_of"])
        for invoice_id, level in notice["advanced"].items():
            marks = self.dunned.setdefault(invoice_id, InvoiceDunning())
            marks.level = level
            marks.last_noticed = as_of
        for invoice_id in notice["escalated_invoices"]:
            self.dunned.setdefault(invoice_id, InvoiceDunning()).escalated = True
        self.last_notice_on[notice["currency"]] = as_of
        self.last_run_on = as_of
        self.notices.append({k: notice[k] for k in (
            "notice_id", "as_of", "currency", "level", "level_name", "channel", "total_due", "escalate")})
