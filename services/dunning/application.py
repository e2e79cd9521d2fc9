"""The dunning application: ledger facts in, dunning-account events out; policies, promises, runs.

Consumed facts go the ledger's way (``shared.feed_application``: a batch folded into the
affected accounts in memory, then written with its position in one transaction).
Commands (a policy revision, a promise, a chunk of a run) are synchronous and called under
the service's write lock, like the consumer's batches: one writer of the cached aggregates
per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from services.dunning.domain import DunningAccount, Policy, dunning_account_id
from services.dunning.domain.collectors import AssignmentRule, Collector, CollectorBook
from services.dunning.domain.registry import PolicyBook, RunRegistry, StatementRunRegistry, resolve
from services.dunning.domain.rendering import Renderer
from services.dunning.domain.statements import StatementContext, StatementFigures, statements_due
from services.dunning.domain.timeline import page as timeline_page
from shared.eventstore import LATEST_VERSION, retry_on_conflict
from shared.feed_application import FeedApplication
from shared.ledger_feed import CREDIT_TYPES, LEDGER_TYPES, Fact
from shared.stored_events import select_versions

T = TypeVar("T")

@dataclass(slots=True)
class ChunkResult:
    """What a run did for one chunk of customers."""

    notices: list[dict[str, Any]] = field(default_factory=list)
    broken_promises: int = 0
    customers: int = 0  # customers for whom the run recorded something


class DunningApplication(FeedApplication[DunningAccount]):
    """Event-sourced dunning: one DunningAccount per customer, a policy book, a run registry."""

    name = "dunning"
    # (a settled invoice shows in the facts that settle it; unapplied cash is for the
    # statements; credit's risk grades are for the assignment rules)
    reads = frozenset(LEDGER_TYPES) - {"ledger.invoice_settled"} | frozenset(CREDIT_TYPES)

    def __init__(self, env: dict[str, str] | None = None, renderer: Renderer | None = None) -> None:
        super().__init__(env=env)
        self.renderer = renderer or Renderer.from_package()
        # the collector book's version when last read, its active rules and their version
        self._rules: tuple[int, list[AssignmentRule], int] | None = None

    # ------------------------------------------------------------------ accounts

    def account_id(self, customer_id: str) -> UUID:
        return dunning_account_id(customer_id)

    def new_account(self, customer_id: str) -> DunningAccount:
        return DunningAccount(customer_id, follows_unapplied=True)

    def observe(self, account: DunningAccount, message: Fact) -> bool:
        return account.observe(message)

    def history(self, customer_id: str) -> list[Any]:
        return list(self.events.get(dunning_account_id(customer_id)))

    # ------------------------------------------------------------------ singletons

    def _singleton(self, aggregate_id: UUID, make: Callable[[], T]) -> T:
        """A fresh copy of a singleton (another replica may have changed it), or a new one."""
        try:
            found: T = self.repository.get(aggregate_id, version=LATEST_VERSION)
        except AggregateNotFoundError:
            return make()
        return found

    def policy_book(self) -> PolicyBook:
        return self._singleton(PolicyBook.create_id(), PolicyBook)

    def run_registry(self) -> RunRegistry:
        return self._singleton(RunRegistry.create_id(), RunRegistry)

    def statement_registry(self) -> StatementRunRegistry:
        return self._singleton(StatementRunRegistry.create_id(), StatementRunRegistry)

    def collector_book(self) -> CollectorBook:
        return self._singleton(CollectorBook.create_id(), CollectorBook)

    def store_policy(self, policy: Policy) -> Policy:
        """Store a revision of a policy (a new version unless the content is unchanged)."""

        def attempt() -> Policy:
            book = self.policy_book()
            stored = book.store(policy)
            self.save_tracked(book, tracking=None)
            return stored

        return retry_on_conflict(attempt)

    def put_collector(self, collector: Collector) -> Collector:
        def attempt() -> Collector:
            book = self.collector_book()
            if book.put_collector(collector):
                self.save_tracked(book, tracking=None)
            return collector

        return retry_on_conflict(attempt)

    def put_rules(self, rules: Sequence[AssignmentRule]) -> CollectorBook:
        """Replace the assignment rules (applied at the next run, to every customer)."""

        def attempt() -> CollectorBook:
            book = self.collector_book()
            if book.put_rules(rules):
                self.save_tracked(book, tracking=None)
            return book

        return retry_on_conflict(attempt)

    def assign(self, customer_id: str, collector_id: str, actor: str) -> dict[str, Any] | None:
        """A collector assigned by hand (it wins over the rules); None when there is no such customer."""
        self.collector_book().require(collector_id)
        return self.command(customer_id, lambda account: (
            account.assign_by_hand(collector_id, actor), account.view())[1])

    def unassign(self, customer_id: str, actor: str) -> dict[str, Any] | None:
        """The manual assignment removed: the rules assign the customer again."""
        book = self.collector_book()
        return self.command(customer_id, lambda account: (
            account.release_by_hand(actor, book.active_rules, book.rules_version), account.view())[1])

    def complete_task(self, customer_id: str, task_id: str, *, outcome: str, note: str | None,
                      completed_on: date, actor: str) -> dict[str, Any] | None:
        return self.command(customer_id, lambda account: account.complete_task(
            task_id, outcome=outcome, note=note, completed_on=completed_on, actor=actor))

    def log_activity(self, customer_id: str, *, kind: str, outcome: str | None, note: str,
                     occurred_on: date, collector_id: str | None, actor: str) -> dict[str, Any] | None:
        if collector_id is not None:
            self.collector_book().require(collector_id)
        return self.command(customer_id, lambda account: account.log_activity(
            kind=kind, outcome=outcome, note=note, occurred_on=occurred_on, collector_id=collector_id,
            actor=actor))

    def timeline(self, customer_id: str, *, limit: int, cursor: str | None
                 ) -> tuple[list[dict[str, Any]], str | None] | None:
        """A page of the customer's timeline, newest first, and the next page's cursor; None
        when there is no such customer."""
        events = self.history(customer_id)
        if not events:
            return None
        entries, after = timeline_page(events, limit=limit, cursor=cursor)
        return [e.view() for e in entries], after

    def assignment_rules(self) -> tuple[list[AssignmentRule], int]:
        """The active assignment rules and their version. The book is read (and its rules
        checked) again only when it changed since: one indexed lookup of its last event, as
        the consumer asks after every batch."""
        last = self.recorder.select_events(CollectorBook.create_id(), desc=True, limit=1)
        stored = last[0].originator_version if last else 0
        if self._rules is None or self._rules[0] != stored:
            book = self.collector_book()
            self._rules = (stored, book.active_rules, book.rules_version)
        return self._rules[1], self._rules[2]

    def after_facts(self, accounts: Iterable[DunningAccount]) -> None:
        """The assignment rules applied again to the accounts a batch of facts changed."""
        rules, version = self.assignment_rules()
        for account in accounts:
            account.assign_by_rules(rules, version)

    def record_run(self, as_of: date, *, notices: int, customers: int,
                   broken_promises: int, collectors_version: int = 0) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            registry = self.run_registry()
            summary = registry.record(as_of, {"notices": notices, "customers": customers,
                                              "broken_promises": broken_promises,
                                              "collectors_version": collectors_version})
            self.save_tracked(registry, tracking=None)
            return summary

        return retry_on_conflict(attempt)

    # ------------------------------------------------------------------ commands

    def promise(self, customer_id: str, *, made_on: date, promised_date: date, amount: Decimal,
                currency: str | None, invoice_ids: Sequence[str] | None) -> dict[str, Any] | None:
        """Record a promise to pay; None when the customer has no dunning account."""
        policy_book = self.policy_book()
        return self.command(customer_id, lambda account: account.promise(
            made_on=made_on, promised_date=promised_date, amount=amount,
            policy=resolve(policy_book, account.policy_name), currency=currency, invoice_ids=invoice_ids))

    def request_plan(self, customer_id: str, **request: Any) -> dict[str, Any] | None:
        """A payment plan asked for (``DunningAccount.request_plan``); None: no such customer."""
        return self.command(customer_id, lambda account: account.request_plan(**request))

    def approve_plan(self, customer_id: str, plan_id: str, *, approved_on: date,
                     actor: str) -> dict[str, Any] | None:
        return self.command(customer_id, lambda account: account.approve_plan(
            plan_id, approved_on=approved_on, actor=actor))

    def reject_plan(self, customer_id: str, plan_id: str, *, reason: str, rejected_on: date,
                    actor: str) -> dict[str, Any] | None:
        return self.command(customer_id, lambda account: account.reject_plan(
            plan_id, reason=reason, rejected_on=rejected_on, actor=actor))

    def respond_to_statement(self, customer_id: str, statement_id: str,
                             **answer: Any) -> dict[str, Any] | None:
        return self.command(customer_id, lambda account: account.respond_to_statement(statement_id, **answer))

    def statement_chunk(self, contexts: Sequence[tuple[StatementContext, str]], as_of: date,
                        figures: dict[str, list[StatementFigures]], book: PolicyBook) -> list[dict[str, Any]]:
        """The statements of a statement run for some customers (each with its policy's name),
        saved in one transaction.

        The accounts are not loaded: what deciding needs of them comes from the read models
        (``queries.statement_contexts``; the run has waited for them to catch up, and only
        statement runs issue statements), and the ``StatementIssued`` events are appended
        after each account's last stored event. Loading every account of the book would cost
        a statement run most of its time. Accounts this process caches are dropped from the
        cache, to be read again with them.
        """
        policies = {name: resolve(book, name) for name in {name for _, name in contexts}}
        unknown = [context.customer_id for context, _ in contexts if context.name is None]
        if unknown:  # rows from before the read models kept names: the accounts themselves
            loaded = self.accounts(unknown)
            contexts = [(loaded[c.customer_id].statement_context() if c.customer_id in loaded else c, name)
                        for c, name in contexts]
        due = [(context.customer_id, statement) for context, name in contexts
               for statement in statements_due(context, as_of, figures[context.customer_id], policies[name],
                                               self.renderer.statement)]
        if not due:
            return []
        issued_event = DunningAccount.StatementIssued  # type: ignore[attr-defined]

        def attempt() -> list[dict[str, Any]]:
            ids = [dunning_account_id(customer_id) for customer_id, _ in due]
            versions = select_versions(self.recorder, list(dict.fromkeys(ids)))
            events = []
            issued = []
            for aggregate_id, (_, statement) in zip(ids, due, strict=True):
                if aggregate_id not in versions:
                    continue  # (no account: nothing to append to)
                version = versions[aggregate_id] = versions[aggregate_id] + 1
                events.append(issued_event(originator_id=aggregate_id, originator_version=version,
                                           timestamp=issued_event.create_timestamp(), statement=statement))
                issued.append(statement)
            try:
                self.save_collected(events, [])
            finally:
                self.evict_cached(*versions)
            return issued

        return retry_on_conflict(attempt)

    def record_statement_run(self, as_of: date, summary: dict[str, Any]) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            registry = self.statement_registry()
            recorded = registry.record(as_of, summary)
            self.save_tracked(registry, tracking=None)
            return recorded

        return retry_on_conflict(attempt)

    def run_chunk(self, customer_ids: Iterable[str], as_of: date, book: PolicyBook,
                  collectors: CollectorBook | None = None) -> ChunkResult:
        """The run for ``as_of`` over some customers (their assignment by the rules first),
        saved in one transaction (done again once on fresh copies if another replica wrote
        one of these accounts since we cached it)."""
        rules, version = (collectors.active_rules, collectors.rules_version) if collectors else ([], 0)

        def run(ids: list[str]) -> tuple[ChunkResult, list[DunningAccount]]:
            result = ChunkResult()
            changed = []
            policies: dict[str, Policy] = {}  # resolved once per chunk: validating one costs ~100 µs
            accounts = self.accounts(ids)
            for customer_id in ids:
                account = accounts.get(customer_id)
                if account is None:
                    continue
                policy = policies.get(account.policy_name)
                if policy is None:
                    policy = policies[account.policy_name] = resolve(book, account.policy_name)
                assigned = collectors is not None and account.assign_by_rules(rules, version)
                outcome = account.run(as_of, policy, self.renderer)
                if outcome or assigned:
                    changed.append(account)
                    result.notices.extend(outcome.notices)
                    result.broken_promises += len(outcome.broken_promises)
            result.customers = len(changed)
            return result, changed

        return self.change_accounts(customer_ids, run, attempts=2)
