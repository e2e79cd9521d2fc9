"""The credit application: ledger facts in, credit-account events out; limits, holds, reviews.

Consumed facts go the ledger's way (``shared.feed_application``: a batch folded into the
affected accounts in memory, then written with its position in one transaction).
Commands (a limit, a manual hold or release, a chunk of a review) are synchronous and called
under the service's write lock, like the consumer's batches: one writer of the cached
aggregates per process. Credit checks are decided on the event loop under the same lock and
saved in groups (``services.credit.check_desk``).

Several replicas may share one PostgreSQL store: an account cached by a replica that does
not consume its partition may be stale; saving it then fails on the aggregate's version
(``IntegrityError``), and the command is retried on a fresh copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from services.credit.domain import CreditAccount, CreditRules, credit_account_id, default_rules
from services.credit.domain.registry import ReviewRegistry
from shared.erp_events import RatingFields
from shared.eventstore import LATEST_VERSION, retry_on_conflict
from shared.feed_application import FeedApplication
from shared.ledger_feed import DUNNING_TYPES, LEDGER_TYPES, Fact

T = TypeVar("T")

@dataclass(slots=True)
class ReviewChunk:
    """What a review did for one chunk of customers."""

    customers: int = 0  # customers for whom the review recorded something
    holds_placed: list[dict[str, Any]] = field(default_factory=list)
    holds_changed: list[dict[str, Any]] = field(default_factory=list)
    holds_released: list[dict[str, Any]] = field(default_factory=list)
    grade_changes: list[dict[str, Any]] = field(default_factory=list)
    reservations_expired: int = 0
    limits_expired: int = 0
    overdue_marked: int = 0


class CreditApplication(FeedApplication[CreditAccount]):
    """Event-sourced credit: one CreditAccount per customer and the review registry."""

    name = "credit"
    reads = frozenset(LEDGER_TYPES) - {"ledger.invoice_settled"} | frozenset(DUNNING_TYPES)

    def __init__(self, env: dict[str, str] | None = None, rules: CreditRules | None = None) -> None:
        super().__init__(env=env)
        self.rules = rules or default_rules()

    # ------------------------------------------------------------------ accounts

    def account_id(self, customer_id: str) -> UUID:
        return credit_account_id(customer_id)

    def new_account(self, customer_id: str) -> CreditAccount:
        return CreditAccount(customer_id)

    def observe(self, account: CreditAccount, message: Fact) -> bool:
        return account.observe(message, self.rules)

    def cached_account(self, customer_id: str) -> CreditAccount | None:
        """The cached account, or None (no I/O: safe on the event loop)."""
        cache = self.repository.cache
        if cache is None:
            return None
        try:
            account = cache.get(credit_account_id(customer_id))
        except KeyError:
            return None
        return account if isinstance(account, CreditAccount) else None

    def load_accounts(self, customer_ids: Iterable[str]) -> dict[str, CreditAccount]:
        """The stored accounts among these customers, read into the cache."""
        found = {}
        for customer_id in customer_ids:
            account = self.account(customer_id)
            if account is not None:
                found[customer_id] = account
        return found

    def history(self, customer_id: str, *, after: int = 0, limit: int | None = None) -> list[Any]:
        return list(self.events.get(credit_account_id(customer_id), gt=after or None, limit=limit))

    # ------------------------------------------------------------------ commands

    def set_limit(self, customer_id: str, currency: str, amount: Decimal, by: str,
                  expires_on: date | None, review_on: date | None, on: date | None = None) -> dict[str, Any]:
        result = self.command(customer_id, lambda a: a.set_limit(
            currency, amount, by, expires_on=expires_on, review_on=review_on, rules=self.rules, on=on),
            create=True)
        assert result is not None
        return result

    def place_hold(self, customer_id: str, by: str, reason: str) -> dict[str, Any]:
        result = self.command(customer_id, lambda a: a.place_manual_hold(by, reason, self.rules),
                               create=True)
        assert result is not None
        return result

    def release_hold(self, customer_id: str, hold_id: str, by: str, reason: str) -> dict[str, Any] | None:
        """None when the customer has no account."""
        return self.command(customer_id, lambda a: a.release_hold(hold_id, by, reason, self.rules),
                             create=False)

    def register_security(self, customer_id: str, record: dict[str, Any], by: str,
                          on: date) -> dict[str, Any]:
        result = self.command(customer_id, lambda a: a.register_security(record, by, on, self.rules),
                              create=True)
        assert result is not None
        return result

    def release_security(self, customer_id: str, security_id: str, reason: str, on: date,
                         by: str) -> dict[str, Any] | None:
        """None when the customer has no account."""
        return self.command(
            customer_id, lambda a: a.release_security(security_id, reason, on, by, self.rules), create=False)

    def draw_security(self, customer_id: str, security_id: str, amount: Decimal, drawn_on: date,
                      by: str, draw_id: str | None = None) -> dict[str, Any] | None:
        """None when the customer has no account."""
        return self.command(customer_id, lambda a: a.draw_security(
            security_id, amount, drawn_on, by, self.rules, draw_id=draw_id), create=False)

    def report_rating(self, customer_id: str, rating: RatingFields, by: str) -> dict[str, Any]:
        result = self.command(customer_id, lambda a: a.report_rating(rating, by, self.rules), create=True)
        assert result is not None
        return result

    def acknowledge_warning(self, customer_id: str, warning_id: str, note: str, by: str,
                            on: date) -> dict[str, Any] | None:
        """None when the customer has no account."""
        return self.command(customer_id, lambda a: a.acknowledge_warning(warning_id, note, by, on),
                            create=False)

    # ------------------------------------------------------------------ reviews

    def review_registry(self) -> ReviewRegistry:
        """A fresh copy (another replica may have recorded a review), or a new one."""
        try:
            registry: ReviewRegistry = self.repository.get(ReviewRegistry.create_id(), version=LATEST_VERSION)
        except AggregateNotFoundError:
            return ReviewRegistry()
        return registry

    def record_review(self, as_of: date, summary: dict[str, int]) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            registry = self.review_registry()
            recorded = registry.record(as_of, summary)
            self.save_tracked(registry, tracking=None)
            return recorded

        return retry_on_conflict(attempt)

    def record_predictions(self, outlooks: dict[str, list[dict[str, Any]]], as_of: date,
                           model_version: str) -> int:
        """The ledger's outlooks of these customers (by customer id) recorded on their accounts, in
        one transaction; how many accounts recorded something new."""

        def record(ids: list[str]) -> tuple[int, list[CreditAccount]]:
            loaded = self.accounts(ids)
            changed = [account for customer_id, account in loaded.items()
                       if account.record_prediction(as_of, model_version, outlooks[customer_id])]
            return len(changed), changed

        return self.change_accounts(outlooks, record, attempts=2)

    def review_chunk(self, customer_ids: Iterable[str], as_of: date) -> ReviewChunk:
        """The review of ``as_of`` over some customers, saved in one transaction (done again
        once on fresh copies if another replica wrote one of these accounts since we cached it)."""

        def review(ids: list[str]) -> tuple[ReviewChunk, list[CreditAccount]]:
            chunk = ReviewChunk()
            changed = []
            loaded = self.accounts(ids)  # (one query per 500 uncached accounts, not one each)
            for customer_id in ids:
                account = loaded.get(customer_id)
                if account is None:
                    continue
                result = account.review(as_of, self.rules)
                if not account.pending_events:  # (a falsy result may still lapse an override)
                    continue
                changed.append(account)
                chunk.holds_placed.extend(result.holds_placed)
                chunk.holds_changed.extend(result.holds_changed)
                chunk.holds_released.extend(result.holds_released)
                if result.grade_change is not None:
                    chunk.grade_changes.append({"customer_id": customer_id, **result.grade_change})
                chunk.reservations_expired += len(result.reservations_expired)
                chunk.limits_expired += len(result.limits_expired)
                chunk.overdue_marked += len(result.overdue_invoices)
            chunk.customers = len(changed)
            return chunk, changed

        return self.change_accounts(customer_ids, review, attempts=2)
