"""Credit checks, the service's hot path: decided in memory, saved in pipelined groups.

A check needs its customer's account: it is in the application's aggregate cache (the
consumer keeps it there), so deciding costs microseconds on the event loop. Writing the
decision is what costs (one event-store transaction), so concurrent checks are saved
together: requests queue up, and one task takes everything queued, decides it under the
service's write lock (the consumer's batches and the commands take the same lock, so no
one else touches the cached accounts meanwhile) and writes each group in one transaction,
in order (group commit), from the event loop (see ``_save``).

The groups are pipelined: while one group commits, the next is decided on the same cached
accounts, so its decisions count the reservations of the group still committing, and its
events (the following versions) are written right after. Every answer of a group, refusals
included, is released only once that group has committed, hence after every group before
it. When a group's transaction fails, the groups after it are not written either; the
accounts they touched are evicted (their cached copies hold unsaved decisions) and their
requests are decided again on fresh copies (a version conflict with another replica up to
three times; any other error is the failing group's answer).

The pipeline keeps the write lock while it has groups in flight, and admits no new group
once someone else waits for the lock, so the consumer and the commands get their turn.

An order checked before is answered from memory without queueing, once its answer is
committed: the account is cached, holds no pending events, and is not in a group in flight.
A retry that arrives while its first attempt is in flight is queued and answered by the
domain from the same account, after the first attempt's group has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import Counter as Tally
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import IntegrityError
from prometheus_client import Counter, Histogram

from services.credit.application import CreditApplication
from services.credit.domain import CreditAccount, CreditError, credit_account_id
from shared.async_events import AsyncEventWriter
from shared.metrics import ServiceMetrics
from shared.store_writer import StoreWriter
from shared.write_turn import WriteTurn

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
    refusal: Exception | None = field(default=None)
    conflicts: int = 0  # how many times its group lost a version conflict


class _NotWritten(Exception):
    """A group behind a failed one: not written, to be decided again."""


def _not_behind_a_failure(group: _Group) -> None:
    """Raises ``_NotWritten`` (and marks the group failed) when the group before it failed."""
    if group.behind is not None and group.behind.failed:
        group.failed = True
        raise _NotWritten


@dataclass(slots=True, eq=False)
class _Group:
    requests: list[_Request]
    accounts: dict[str, CreditAccount]  # the accounts it recorded something on, by customer
    events: list[Any]  # collected from those accounts on the loop
    behind: _Group | None  # the group written before it, while that one is in flight
    saved: asyncio.Future[None] | None = None
    failed: bool = False  # set by the save thread


class CheckDesk:
    """Answers credit checks; see the module's docstring."""

    def __init__(self, app: CreditApplication, writer: StoreWriter, metrics: ServiceMetrics, *,
                 max_group: int = 1000, notify_delay: float = 0.25, pipeline_depth: int = 2,
                 max_conflicts: int = 3, inline_saves: bool = True) -> None:
        self.app = app
        self.writer = writer  # the desk pipelines its saves under the writer's lock
        self.max_group = max_group
        self.pipeline_depth = pipeline_depth
        self.max_conflicts = max_conflicts
        # The followers are woken at most this often by checks: waking them after every
        # group made them project and track one or two events per transaction, three
        # transactions per check at a moderate rate; at 50 ms, the projector's work took
        # the credit server's throughput on PostgreSQL from 61% of the trivial endpoint's to
        # 54% (docs/benchmarks-history.md). What checks change is only in the check and position rows,
        # which no endpoint reads: reads of a customer's credit come from the event store.
        self.notify_delay = notify_delay
        self._notify_scheduled = False
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._kick: asyncio.Future[None] | None = None  # the pipeline waits on it: a commit or a request
        # while a group is in flight, the next is decided once this many requests are queued
        # (as many as that group: deciding every arrival at once made groups of one or two)
        self._admit_at: int | None = None
        self._in_flight: Tally[str] = Tally()  # customers with checks in groups not yet committed
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # one thread writes the groups, so they are written in the order they were decided
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="credit-checks-save")
        # where groups are saved: see _save
        self._turn = app.write_turn() if inline_saves else None
        self._writer = AsyncEventWriter(app) if inline_saves and self._turn is None else None
        self._saving: set[asyncio.Future[None]] = set()
        registry = metrics.registry
        self.decisions = Counter("receivables_credit_checks", "Credit checks answered",
                                 ["decision", "repeat"], registry=registry)
        self._counted: dict[tuple[str, bool], Any] = {}  # (decision, repeat) -> its counter
        self.saves = Counter("receivables_credit_check_saves", "Groups of checks saved, by where",
                             ["on"], registry=registry)
        self._saved_on_loop, self._saved_in_thread = self.saves.labels("loop"), self.saves.labels("thread")
        self._turn_waits = Counter("receivables_credit_check_turn_waits",
                                   "Groups of checks that waited for another writer of the SQLite database",
                                   registry=registry)
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
        if self._admit_at is not None and len(self._queue) >= self._admit_at:
            self._kick_pipeline()
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
        if customer_id in self._in_flight:
            return None
        account = self.app.cached_account(customer_id)
        if account is None or account.pending_events:
            return None
        given = account.checks.get(order_id)
        if given is None or given["currency"] != currency or Decimal(given["amount"]) != amount:
            return None  # new, or conflicting: the domain decides (and refuses a conflict)
        if "deposit_required" in given["reasons"]:
            return None  # decided again once the deposit awaited changed: the domain knows
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
        if self._saving:  # let a transaction under way end before its connection closes
            await asyncio.wait(self._saving)
        if self._writer is not None:
            await self._writer.close()
        await asyncio.to_thread(self._saver.shutdown)

    # ------------------------------------------------------------------ the pipeline

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            in_flight: deque[_Group] = deque()
            try:
                async with self.writer.lock:
                    await self._pipeline(in_flight)
            except asyncio.CancelledError:
                self._give_up(in_flight, RuntimeError("the credit service is stopping"))
                raise
            except Exception as error:
                log.exception("credit checks not saved")
                self._give_up(in_flight, error)

    async def _pipeline(self, in_flight: deque[_Group]) -> None:
        """Decide, write and answer groups until none is queued or in flight."""
        loop = asyncio.get_running_loop()
        spoilt: set[str] = set()  # customers whose decisions failed midway: evicted once nothing is in flight
        while self._queue or in_flight:
            while (self._queue and len(in_flight) < self.pipeline_depth and not spoilt
                   and (not in_flight or len(self._queue) >= len(in_flight[-1].requests))
                   and not self.writer.lock.waiting):
                requests, self._queue = self._queue[:self.max_group], self._queue[self.max_group:]
                try:
                    group = await self._decide(requests, in_flight[-1] if in_flight else None)
                except BaseException as error:
                    for request in requests:
                        if not request.future.done():
                            request.future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    log.exception("credit checks not decided")
                    spoilt.update(r.customer_id for r in requests)
                    continue
                group.saved = self._save(group, in_flight)
                group.saved.add_done_callback(self._kick_pipeline)
                in_flight.append(group)
            if not in_flight:
                if spoilt:  # (evicted only now: the groups in flight were decided on these copies)
                    self.app.evict_cached(*(credit_account_id(c) for c in spoilt))
                    spoilt.clear()
                    continue
                if self._queue:  # others wait for the lock: let them in, then go on
                    self._wake.set()
                return
            head = in_flight[0]
            assert head.saved is not None
            if not head.saved.done():
                # woken by the head's commit, or by a request to decide meanwhile
                if len(in_flight) < self.pipeline_depth and not spoilt:
                    self._admit_at = len(in_flight[-1].requests)
                self._kick = loop.create_future()
                try:
                    await self._kick
                finally:
                    self._admit_at = None
                continue
            in_flight.popleft()
            self._settle(head)
            try:
                head.saved.result()
            except Exception as error:
                await self._redecide(head, error, in_flight)
                continue
            self.group_size.observe(len(head.requests))
            if head.accounts:
                self._notify_soon()
            self._answer(head)

    def _kick_pipeline(self, _: object = None) -> None:
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    async def _decide(self, requests: list[_Request], behind: _Group | None) -> _Group:
        """Decide requests on the cached accounts; their events are collected here, on the loop."""
        accounts, fresh = await self._accounts(requests)
        changed: dict[str, CreditAccount] = {}
        rules = self.app.rules
        for request in requests:
            if request.future.done():  # the caller went away
                continue
            account = accounts[request.customer_id]
            try:
                request.answer = account.check(request.order_id, request.amount, request.currency, request.on,
                                               rules)
            except CreditError as error:
                request.refusal = error  # answered once the groups before it have committed
                continue
            if account.pending_events:
                changed[request.customer_id] = account
        for customer_id, account in changed.items():
            if customer_id in fresh:  # so that the next group decides on this copy, not the store's
                self.app.cache_aggregate(account)
        self._in_flight.update(r.customer_id for r in requests)
        events = [event for account in changed.values() for event in account.collect_events()]
        return _Group(requests, changed, events, behind)

    def _save(self, group: _Group, in_flight: deque[_Group]) -> asyncio.Future[None]:
        """Write the group, on the loop, after the groups before it.

        A save in the save thread hands control back and forth with the busy loop (its every
        return from the database waits for the loop to let go of the GIL), which took longer
        than the save itself. So on PostgreSQL the group is saved over an asynchronous
        connection (``shared.async_events``), the loop serving meanwhile; on SQLite with a
        multi-row insert and a commit on the loop, once this process has the turn at writing
        the database (``shared.write_turn.WriteTurn``): at once when no one else has it, else after
        waiting for it in the save thread, which blocks no one. (``inline_saves`` off: the
        whole save in the save thread.)
        """
        loop = asyncio.get_running_loop()
        if self._writer is None and self._turn is None:
            self._saved_in_thread.inc()
            return loop.run_in_executor(self._saver, self._write, group)
        self._saved_on_loop.inc()
        turn = self._turn
        idle = not in_flight or (in_flight[-1].saved is not None and in_flight[-1].saved.done())
        if turn is not None and idle and turn.try_acquire():
            saved = loop.create_future()
            try:
                self._write_in_turn(group, turn)
            except Exception as error:
                saved.set_exception(error)
            else:
                saved.set_result(None)
            return saved
        saving = asyncio.ensure_future(self._save_behind(group))
        self._saving.add(saving)
        saving.add_done_callback(self._saving.discard)
        return saving

    async def _save_behind(self, group: _Group) -> None:
        """The group's transaction once the one before it is done (and, on SQLite, the turn ours)."""
        behind = group.behind
        if behind is not None and behind.saved is not None:
            await asyncio.wait([behind.saved])
        if self._writer is not None:
            _not_behind_a_failure(group)
            try:
                await self._writer.save(group.events)
            except BaseException:
                group.failed = True
                raise
            return
        turn = self._turn
        assert turn is not None
        if not turn.try_acquire():
            self._turn_waits.inc()
            acquiring = asyncio.get_running_loop().run_in_executor(
                self._saver, functools.partial(turn.acquire, for_thread=threading.get_ident()))
            try:
                await asyncio.shield(acquiring)
            except asyncio.CancelledError:  # (stopping) the turn, once had, goes straight back
                def give_back(acquired: asyncio.Future[None]) -> None:
                    if not acquired.cancelled() and acquired.exception() is None:
                        turn.release()

                acquiring.add_done_callback(give_back)
                raise
        self._write_in_turn(group, turn)

    def _write_in_turn(self, group: _Group, turn: WriteTurn) -> None:
        """The group's transaction, on the loop, in the turn it holds (given back after)."""
        try:
            self._write(group)
        finally:
            turn.release()

    def _write(self, group: _Group) -> None:
        """One transaction for the group, unless one before it failed."""
        _not_behind_a_failure(group)
        try:
            self.app.save_collected(group.events, list(group.accounts.values()))
        except BaseException:
            group.failed = True
            raise

    def _settle(self, group: _Group) -> None:
        """The group is out of the pipeline: its customers are no longer in flight."""
        self._in_flight.subtract(r.customer_id for r in group.requests)
        for customer_id in {r.customer_id for r in group.requests}:
            if self._in_flight[customer_id] <= 0:
                del self._in_flight[customer_id]

    def _answer(self, group: _Group) -> None:
        for request in group.requests:
            if request.future.done():
                continue
            if request.refusal is not None:
                request.future.set_exception(request.refusal)
            elif request.answer is not None:
                self._count(request.answer["decision"], False)
                request.future.set_result(request.answer)

    async def _redecide(self, failed: _Group, error: Exception, in_flight: deque[_Group]) -> None:
        """A group's transaction failed: nothing after it is written; decide those again."""
        behind = list(in_flight)
        in_flight.clear()
        for group in behind:  # they fail fast (_NotWritten); wait so no write is left running
            assert group.saved is not None
            with contextlib.suppress(Exception):
                await group.saved
            self._settle(group)
        groups = [failed, *behind]
        self.app.evict_cached(*(account.id for group in groups for account in group.accounts.values()))
        again: list[_Request] = []
        if isinstance(error, IntegrityError):
            # another replica wrote one of these accounts: decide again on fresh copies
            log.info("credit checks met a version conflict; deciding them again")
            for request in failed.requests:
                request.conflicts += 1
        elif not isinstance(error, _NotWritten):
            log.error("credit checks not saved", exc_info=error)
            for request in failed.requests:
                if not request.future.done():
                    request.future.set_exception(error)
        for request in [r for group in groups for r in group.requests]:
            if request.future.done():
                continue
            if request.conflicts >= self.max_conflicts:
                request.future.set_exception(error)
                continue
            request.answer, request.refusal = None, None
            again.append(request)
        self._queue[:0] = again

    def _give_up(self, in_flight: deque[_Group], error: BaseException) -> None:
        for group in in_flight:
            self._settle(group)
            for request in group.requests:
                if not request.future.done():
                    request.future.set_exception(error)
        in_flight.clear()

    def _notify_soon(self) -> None:
        if self._notify_scheduled:
            return
        self._notify_scheduled = True

        def notify() -> None:
            self._notify_scheduled = False
            self.writer.written()

        asyncio.get_running_loop().call_later(self.notify_delay, notify)

    async def _accounts(self, group: list[_Request]) -> tuple[dict[str, CreditAccount], set[str]]:
        """The requests' accounts, by customer, and which of them were not cached."""
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
        return accounts, set(missing)
