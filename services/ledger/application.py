"""The ledger application: inbound messages in, customer-account events out.

A batch is handled in two steps so that nothing is lost: ``prepare`` folds the messages
into the affected accounts in memory and returns the refused ones (which the caller sends
to the dead-letter topic first), then ``commit`` writes every new event together with
the batch's position in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.ledger.domain import CustomerAccount, LedgerError, account_id
from shared.erp_events import InboundMessage
from shared.eventstore import TrackedApplication


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message the domain refused, with the reason for the dead-letter topic."""

    message: InboundMessage
    reason: str


@dataclass(slots=True)
class PreparedBatch:
    accounts: dict[str, CustomerAccount] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # per message: applied/duplicate/refused

    stored_events: int = 0


class LedgerApplication(TrackedApplication):
    """Event-sourced ledger: one CustomerAccount aggregate per customer."""

    name = "ledger"

    def account(self, customer_id: str) -> CustomerAccount | None:
        try:
            account: CustomerAccount = self.repository.get(account_id(customer_id))
        except AggregateNotFoundError:
            return None
        return account

    def prepare(self, messages: Iterable[InboundMessage]) -> PreparedBatch:
        """Apply messages to their accounts in memory; nothing is written yet."""
        batch = PreparedBatch()
        messages = list(messages)
        new = self._new_customers({m.customer_id for m in messages})
        for message in messages:
            account = batch.accounts.get(message.customer_id)
            if account is None:
                if message.customer_id in new:
                    account = CustomerAccount(customer_id=message.customer_id)
                else:
                    account = self.account(message.customer_id) or CustomerAccount(
                        customer_id=message.customer_id
                    )
                batch.accounts[message.customer_id] = account
            try:
                if account.handle(message):
                    batch.applied += 1
                    batch.outcomes.append("applied")
                else:
                    batch.duplicates += 1
                    batch.outcomes.append("duplicate")
            except LedgerError as error:
                batch.refusals.append(Refusal(message, str(error)))
                batch.outcomes.append("refused")
        return batch

    def _new_customers(self, customer_ids: set[str]) -> set[str]:
        """The customers without an account yet, found with one query for the whole batch."""
        uncached = {c: account_id(c) for c in customer_ids if not self.is_cached(account_id(c))}
        if not uncached:
            return set()
        stored = self.stored_ids(uncached.values())
        return {c for c, aggregate_id in uncached.items() if aggregate_id not in stored}

    def commit(self, batch: PreparedBatch, tracking: Tracking | None = None) -> None:
        """Write the batch's events and its position atomically."""
        batch.stored_events = sum(len(a.pending_events) for a in batch.accounts.values())
        self.save_tracked(*batch.accounts.values(), tracking=tracking)

    def discard(self, batch: PreparedBatch) -> None:
        """Drop a prepared batch whose commit will not happen (the cache holds its changes)."""
        self.evict_cached(*(account_id(c) for c in batch.accounts))

    # The consumer's view of this application (shared.consumer.Sink).

    def refusals(self, batch: PreparedBatch) -> list[tuple[InboundMessage, str]]:
        return [(r.message, r.reason) for r in batch.refusals]

    def counts(self, batch: PreparedBatch) -> tuple[int, int, int]:
        return batch.applied, batch.duplicates, batch.stored_events

    def on_assigned(self) -> None:
        # Partitions moved: another replica may have written accounts we hold in memory.
        self.clear_cache()

    def history(self, customer_id: str) -> Sequence[Any]:
        """Every stored event of a customer's account, oldest first (the audit trail)."""
        return list(self.events.get(account_id(customer_id)))

