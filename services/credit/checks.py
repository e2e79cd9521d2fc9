"""Credit checks, the service's hot path: decided in memory, saved in groups.

A check needs its customer's account: it is in the application's aggregate cache (the
consumer keeps it there), so deciding costs microseconds on the event loop. Writing the
decision is what costs (one event-store transaction), so concurrent checks are saved
together: requests queue up, and one task takes everything queued, decides it under the
service's write lock (the consumer's batches and the commands take the same lock, so no
one else touches the cached accounts meanwhile), saves all the changed accounts in one
transaction in a worker thread, and answers every request. While that transaction runs,
the next requests queue for the next one (group commit).

An order checked before is answered from memory without queueing, once its answer is
committed: the account is cached, holds no pending events, and is not in a save under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import IntegrityError
from prometheus_client import Counter, Histogram

from services.credit.application import CreditApplication
from services.credit.domain import CreditAccount, CreditError
from shared.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    customer_id: str
    order_id: str
    amount: Decimal
    currency: str
    on: date
    future: asyncio.Future[dict[str, Any]]
    answer: dict[str, Any] | None = field(default=None)


class CheckDesk:
    """Answers credit checks; see the module's docstring."""

    def __init__(self, app: CreditApplication, write_lock: asyncio.Lock, metrics: ServiceMetrics,
                 on_committed: Callable[[], None] = lambda: None, *, max_group: int = 1000,
                 notify_delay: float = 0.05) -> None:
        self.app = app
        self.write_lock = write_lock
        self.on_committed = on_committed
        self.max_group = max_group
        # The followers are woken at most this often by checks: waking them after every
        # group made them project and track one or two events per transaction, three
        # transactions per check at a moderate rate. (Reads of a customer's credit come
        # from the event store, not the read models, so nothing waits for them.)
        self.notify_delay = notify_delay
        self._notify_scheduled = False
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._saving: set[str] = set()  # customers whose accounts are being saved
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        registry = metrics.registry
        self.decisions = Counter("receivables_credit_checks", "Credit checks answered",
                                 ["decision", "repeat"], registry=registry)
        self._counted: dict[tuple[str, bool], Any] = {}  # (decision, repeat) -> its counter
        self.group_size = Histogram("receivables_credit_check_group_size", "Checks saved per transaction",
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=registry)

    async def check(self, customer_id: str, order_id: str, amount: Decimal, currency: str,
                    on: date) -> dict[str, Any]:
        """The answer for an order (raises the domain's ``CreditError`` for a refused check)."""
        answer = self._answered(customer_id, order_id, amount, currency)
        if answer is not None:
            self._count(answer["decision"], True)
            return answer
        if self._stopping:
            raise RuntimeError("the credit service is stopping")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(customer_id, order_id, amount, currency, on, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="credit-checks")
        self._wake.set()
        return await future

    def _count(self, decision: str, repeat: bool) -> None:
        # the labelled counter once per kind: labels() costs more than the increment
        counter = self._counted.get((decision, repeat))
        if counter is None:
            counter = self._counted[decision, repeat] = self.decisions.labels(decision, str(repeat).lower())
        counter.inc()

    def _answered(self, customer_id: str, order_id: str, amount: Decimal,
                  currency: str) -> dict[str, Any] | None:
        """A committed answer for the same order, amount and currency, from memory."""
        if customer_id in self._saving:
            return None
        account = self.app.cached_account(customer_id)
        if account is None or account.pending_events:
            return None
        given = account.checks.get(order_id)
        if given is None or given["currency"] != currency or Decimal(given["amount"]) != amount:
            return None  # new, or conflicting: the domain decides (and refuses a conflict)
        return dict(given)

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the credit service is stopping"))
        self._queue.clear()

    # ------------------------------------------------------------------ the group committer

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                group, self._queue = self._queue[:self.max_group], self._queue[self.max_group:]
                try:
                    async with self.write_lock:
                        await self._decide_and_save(group)
                except asyncio.CancelledError:
                    for request in group:
                        if not request.future.done():
                            request.future.set_exception(RuntimeError("the credit service is stopping"))
                    raise
                except Exception as error:
                    log.exception("credit checks not saved")
                    for request in group:
                        if not request.future.done():
                            request.future.set_exception(error)

    async def _decide_and_save(self, group: list[_Request]) -> None:
        for attempt in range(3):
            accounts = await self._accounts(group)
            changed = self._decide(group, accounts)
            if not changed:
                break
            self._saving.update(changed)
            try:
                await asyncio.to_thread(self.app.save_tracked, *changed.values(), tracking=None)
            except IntegrityError:
                # another replica wrote one of these accounts: decide again on fresh copies
                self.app.evict_cached(*(a.id for a in changed.values()))
                for request in group:
                    request.answer = None
                if attempt == 2:
                    raise
                continue
            finally:
                self._saving.difference_update(changed)
            self.group_size.observe(len(group))
            self._notify_soon()
            break
        for request in group:
            if request.answer is not None and not request.future.done():
                self._count(request.answer["decision"], False)
                request.future.set_result(request.answer)

    def _notify_soon(self) -> None:
        if self._notify_scheduled:
            return
        self._notify_scheduled = True

        def notify() -> None:
            self._notify_scheduled = False
            self.on_committed()

        asyncio.get_running_loop().call_later(self.notify_delay, notify)

    async def _accounts(self, group: list[_Request]) -> dict[str, CreditAccount]:
        accounts: dict[str, CreditAccount] = {}
        missing = []
        for customer_id in {r.customer_id for r in group}:
            account = self.app.cached_account(customer_id)
            if account is None:
                missing.append(customer_id)
            else:
                accounts[customer_id] = account
        if missing:
            accounts.update(await asyncio.to_thread(self.app.load_accounts, missing))
        for customer_id in missing:
            if customer_id not in accounts:  # a customer credit has not heard of yet
                accounts[customer_id] = CreditAccount(customer_id)
        return accounts

    def _decide(self, group: list[_Request], accounts: dict[str, CreditAccount]) -> dict[str, CreditAccount]:
        """Decide every pending request; the accounts that recorded something, by customer."""
        changed: dict[str, CreditAccount] = {}
        rules = self.app.rules
        for request in group:
            if request.future.done():  # the caller went away
                continue
            account = accounts[request.customer_id]
            try:
                request.answer = account.check(request.order_id, request.amount, request.currency, request.on,
                                               rules)
            except CreditError as error:
                request.future.set_exception(error)
                continue
            if account.pending_events:
                changed[request.customer_id] = account
        return changed
