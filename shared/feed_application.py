"""The consumer's side of a service that follows the ledger's feed (dunning, credit).

Consumed facts go the ledger's way (``shared.consumer.Sink``): ``prepare`` folds a batch
into the customers' account aggregates in memory, ``commit`` writes their events with the
batch's position in one transaction, ``discard`` forgets what a failed commit left in the
aggregate cache. A service names its account aggregate (``account_id``, ``new_account``)
and how an account takes a fact (``observe``).

Commands go through ``command`` (one account) and ``change_accounts`` (a chunk of a run or
review): what they change is saved in one transaction; a failure evicts the accounts from
the cache (one may hold events that were not saved), and a version conflict (another
replica wrote an account since it was cached) does the work again on fresh copies.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent, Tracking

from shared.errors import DomainError
from shared.eventstore import LATEST_VERSION, TrackedApplication, retry_on_conflict
from shared.ledger_feed import Fact
from shared.stored_events import select_stored_events

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Refusal:
    message: Fact
    reason: str


@dataclass(slots=True)
class PreparedBatch(Generic[A]):
    accounts: dict[str, A] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    stored_events: int = 0


class FeedApplication(TrackedApplication, Generic[A]):
    """A TrackedApplication with one account aggregate per customer, fed by the ledger's facts."""

    # The ledger types the accounts read (None: all); the consumer skips the others unread.
    # ``ledger.invoice_settled`` only repeats an outcome the fact beside it carries.
    reads: frozenset[str] | None = None

    def account_id(self, customer_id: str) -> UUID:
        raise NotImplementedError

    def new_account(self, customer_id: str) -> A:
        raise NotImplementedError

    def observe(self, account: A, message: Fact) -> bool:
        """Apply a fact to the account; False when it changed nothing (seen before)."""
        raise NotImplementedError

    def after_facts(self, accounts: Iterable[A]) -> None:
        """What the service decides again for the accounts a batch's facts changed, once the
        batch is taken in (nothing by default)."""

    def accounts(self, customer_ids: Sequence[str]) -> dict[str, A]:
        """Many customers' accounts at once: the uncached ones read in one query per 500.

        (``repository.get`` asks the store once per aggregate: a round trip each, most of a
        run's or a review's time when thousands of accounts are not in the cache.) Like
        ``get``, the accounts read are put in the cache. Customers without an account are left out.
        """
        found: dict[str, A] = {}
        missing: dict[UUID, str] = {}
        for customer_id in customer_ids:
            aggregate_id = self.account_id(customer_id)
            if self.is_cached(aggregate_id):
                found[customer_id] = self.repository.get(aggregate_id)
            else:
                missing[aggregate_id] = customer_id
        ids = list(missing)
        to_domain_event = self.mapper.to_domain_event
        cache = self.repository.cache
        for start in range(0, len(ids), 500):
            by_id: dict[UUID, list[StoredEvent]] = {}
            for stored in select_stored_events(self.recorder, ids[start:start + 500]):
                by_id.setdefault(stored.originator_id, []).append(stored)  # type: ignore[arg-type]
            for aggregate_id, stored_events in by_id.items():
                # what the repository's project_aggregate does, without its runtime Protocol
                # isinstance check per event (about half the cost of rebuilding an account)
                account: Any = None
                for stored in stored_events:
                    event: Any = to_domain_event(stored)  # an aggregate event: it has mutate()
                    account = event.mutate(account)
                if account is None:
                    continue
                if cache is not None:
                    cache.put(aggregate_id, account)
                found[missing[aggregate_id]] = account
        return found

    def account(self, customer_id: str, *, fresh: bool = False) -> A | None:
        """A customer's account (``fresh``: read from the store, not the writer's cache)."""
        try:
            if fresh:
                account: A = self.repository.get(self.account_id(customer_id), version=LATEST_VERSION)
            else:
                account = self.repository.get(self.account_id(customer_id))
        except AggregateNotFoundError:
            return None
        return account

    def command(self, customer_id: str, act: Callable[[A], T], *, create: bool = False) -> T | None:
        """``act`` on the customer's account, then the account saved; None when there is no
        account (and not ``create``: then a new one)."""

        def work(_: list[str]) -> tuple[T | None, Collection[A]]:
            account = self.account(customer_id)
            if account is None:
                if not create:
                    return None, ()
                account = self.new_account(customer_id)
            return act(account), (account,)

        return self.change_accounts([customer_id], work)

    def change_accounts(self, customer_ids: Iterable[str],
                        work: Callable[[list[str]], tuple[T, Collection[A]]], *, attempts: int = 5) -> T:
        """``work(ids)`` over these customers' accounts, then the accounts it says it changed
        saved in one transaction; ``attempts`` in all when versions conflict."""
        ids = list(customer_ids)

        def attempt() -> T:
            try:
                result, changed = work(ids)
                self.save_tracked(*changed, tracking=None)
            except Exception:
                self.evict_cached(*(self.account_id(c) for c in ids))
                raise
            return result

        return retry_on_conflict(attempt, attempts)

    def prepare(self, messages: Sequence[Fact]) -> PreparedBatch[A]:
        """Apply facts to their accounts in memory; nothing is written yet."""
        batch: PreparedBatch[A] = PreparedBatch()
        touched: dict[str, A] = {}
        uncached = {m.customer_id for m in messages
                    if m.known and not self.is_cached(self.account_id(m.customer_id))}
        stored = self.stored_ids([self.account_id(c) for c in uncached]) if uncached else set()
        for message in messages:
            if not message.known:
                batch.duplicates += 1  # a ledger event type this version does not read
                continue
            account = batch.accounts.get(message.customer_id)
            if account is None:
                if message.customer_id in uncached and self.account_id(message.customer_id) not in stored:
                    account = self.new_account(message.customer_id)
                else:
                    account = self.account(message.customer_id) or self.new_account(message.customer_id)
                batch.accounts[message.customer_id] = account
            try:
                changed = self.observe(account, message)
            except DomainError as error:
                # refused by the domain: dead-lettered with the reason. Any other exception is
                # a bug, not bad data: it fails the batch loudly (the consumer retries it and,
                # if it keeps failing, readiness says so) rather than losing the fact.
                batch.refusals.append(Refusal(message, f"{type(error).__name__}: {error}"))
                continue
            if changed:
                batch.applied += 1
                touched[message.customer_id] = account
            else:
                batch.duplicates += 1
        if touched:
            self.after_facts(touched.values())
        return batch

    def commit(self, batch: PreparedBatch[A], tracking: Tracking | None = None) -> None:
        batch.stored_events = sum(len(a.pending_events) for a in batch.accounts.values())
        self.save_tracked(*batch.accounts.values(), tracking=tracking)

    def discard(self, batch: PreparedBatch[A]) -> None:
        self.evict_cached(*(self.account_id(c) for c in batch.accounts))

    def refusals(self, batch: PreparedBatch[A]) -> list[tuple[Fact, str]]:
        return [(r.message, r.reason) for r in batch.refusals]

    def counts(self, batch: PreparedBatch[A]) -> tuple[int, int, int]:
        return batch.applied, batch.duplicates, batch.stored_events

    def on_assigned(self) -> None:
        self.clear_cache()
