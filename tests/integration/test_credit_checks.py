"""The check desk on a real event store (SQLite and PostgreSQL): concurrent checks are decided
one after the other in memory, saved together, reserve only what the limit allows, and are
answered again from memory; a rebuilt account agrees with the cached one. Pipelined groups:
a group decided while the one before it commits counts that group's reservations, nothing is
answered before its own commit, and a failed commit answers no one 'approve' and decides the
groups behind it again; a writer waiting for the lock goes before the next group. On SQLite,
the projector's writes (a file of their own) hold up no save."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from services.credit.application import CreditApplication
from services.credit.check_desk import CheckDesk
from services.credit.domain import ConflictingCheck, InvalidAmount
from services.credit.projections import CreditProjector, checks, positions
from services.credit.service import migrate_read_models
from shared.db import make_engine, read_models_url
from shared.eventstore import eventsourcing_env
from shared.metrics import ServiceMetrics
from shared.store_writer import StoreWriter
from tests.integration.ledger_harness import poll


async def test_concurrent_checks_are_saved_in_groups_and_never_reserve_past_the_limit(
    database_url: str,
) -> None:
    app = CreditApplication(env=eventsourcing_env(database_url))
    metrics = ServiceMetrics("credit")
    desk = CheckDesk(app, StoreWriter(), metrics)
    try:
        await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
        day = date(2025, 3, 1)
        # 150 orders of 10.00 at once: the first 100 fit the limit, the rest go to review
        answers = await asyncio.gather(*(desk.check("C1", f"O{i}", Decimal("10.00"), "EUR", day)
                                         for i in range(150)))
        decisions = [a["decision"] for a in answers]
        assert decisions == ["approve"] * 100 + ["review"] * 50
        assert answers[99]["available_credit"] == "10.00" and answers[100]["available_credit"] == "0.00"
        groups = metrics.registry.get_sample_value("receivables_credit_check_group_size_count")
        assert groups is not None and groups < 150  # saved together, not one transaction each
        # answered again from memory: the same answers, nothing stored
        stored = app.recorder.max_notification_id()
        again = await asyncio.gather(*(desk.check("C1", f"O{i}", Decimal("10.00"), "EUR", day)
                                       for i in range(150)))
        assert again == answers and app.recorder.max_notification_id() == stored
        with pytest.raises(ConflictingCheck):
            await desk.check("C1", "O1", Decimal("11.00"), "EUR", day)
        with pytest.raises(InvalidAmount):
            await desk.check("C1", "O-bad", Decimal("0.001"), "EUR", day)
        # what the store holds agrees with the cache
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and fresh.exposure("EUR") == Decimal("1000.00")
        assert fresh.checks == app.cached_account("C1").checks  # type: ignore[union-attr]
    finally:
        await desk.stop()
        app.close()


DAY = date(2025, 3, 1)


class GatedSaves:
    """Stands in for the application's save: each waits for the gate, and may fail first."""

    def __init__(self, app: CreditApplication, failures: list[Exception]) -> None:
        self.save = app.save_collected
        self.failures = failures  # raised by the first saves, in turn
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self, events: list[object], aggregates: list[object]) -> None:
        self.calls += 1
        assert self.gate.wait(30), "the test never opened the gate"
        if self.failures:
            raise self.failures.pop(0)
        self.save(events, aggregates)  # type: ignore[arg-type]


async def _pipelined(database_url: str, failures: list[Exception]) -> tuple[
        CreditApplication, tuple[BaseException | dict[str, Any], BaseException | dict[str, Any]]]:
    """O1 (600.00) is saved behind a closed gate while O2 (600.00, same customer, limit 1000.00)
    is decided behind it; then the gate opens. (Saves in the save thread: on the loop, the
    gate would stop the loop that opens it.)"""
    app = CreditApplication(env=eventsourcing_env(database_url))
    desk = CheckDesk(app, StoreWriter(), ServiceMetrics("credit"), inline_saves=False)
    try:
        saves, first = await _saving_o1(app, desk, failures)
        second = asyncio.create_task(desk.check("C1", "O2", Decimal("600.00"), "EUR", DAY))
        account = app.cached_account("C1")
        assert account is not None
        await poll(_now(lambda: "O2" in account.checks), bool, timeout=10, what="O2 decided behind O1")
        # decided, but nothing answered before its group commits
        assert not first.done() and not second.done()
        saves.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 30)
        return app, answers
    finally:
        await desk.stop()


async def _saving_o1(app: CreditApplication, desk: CheckDesk, failures: list[Exception]) -> tuple[
        GatedSaves, asyncio.Task[dict[str, Any]]]:
    """C1 (limit 1000.00) checks O1 (600.00), whose save has begun behind a closed gate."""
    await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
    saves = GatedSaves(app, failures)
    app.save_collected = saves  # type: ignore[method-assign,assignment]
    first = asyncio.create_task(desk.check("C1", "O1", Decimal("600.00"), "EUR", DAY))
    await poll(_now(lambda: saves.calls), lambda calls: calls == 1, timeout=10, what="O1's save begun")
    return saves, first


def _now(value: Callable[[], object]) -> Callable[[], asyncio.Future[object]]:
    async def probe() -> object:
        return value()
    return probe  # type: ignore[return-value]


async def test_a_group_decided_while_the_one_before_commits_counts_its_reservations(
    database_url: str,
) -> None:
    app, answers = await _pipelined(database_url, [])
    try:
        first, second = answers
        assert isinstance(first, dict) and isinstance(second, dict)
        assert first["decision"] == "approve"
        assert second["decision"] == "review" and second["exposure"] == "600.00"
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O1", "O2"}
        assert fresh.exposure("EUR") == Decimal("600.00")
    finally:
        app.close()


async def test_a_version_conflict_decides_the_pipeline_again_on_fresh_copies(database_url: str) -> None:
    app, answers = await _pipelined(database_url, [IntegrityError("another replica wrote C1")])
    try:
        # both decided again from the store, in their order: the same answers, stored once
        first, second = answers
        assert isinstance(first, dict) and isinstance(second, dict)
        assert (first["decision"], second["decision"]) == ("approve", "review")
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O1", "O2"}
        assert fresh.exposure("EUR") == Decimal("600.00")
        assert app.cached_account("C1").checks == fresh.checks  # type: ignore[union-attr]
    finally:
        app.close()


async def test_a_failed_commit_answers_no_one_approve_and_decides_the_groups_behind_it_again(
    database_url: str,
) -> None:
    app, answers = await _pipelined(database_url, [OSError("disk gone")])
    try:
        first, second = answers
        # O1's group failed: its caller gets the error, not the approval it was decided
        assert isinstance(first, OSError)
        # O2 was decided 'review' behind O1's reservation; decided again without it: approved
        assert isinstance(second, dict) and second["decision"] == "approve"
        assert second["exposure"] == "0.00"
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O2"}
        assert fresh.exposure("EUR") == Decimal("600.00")
    finally:
        app.close()


async def test_a_retry_arriving_while_its_order_is_in_flight_gets_the_same_answer_after_the_commit(
    database_url: str,
) -> None:
    app = CreditApplication(env=eventsourcing_env(database_url))
    desk = CheckDesk(app, StoreWriter(), ServiceMetrics("credit"), inline_saves=False)
    try:
        saves, first = await _saving_o1(app, desk, [])
        retry = asyncio.create_task(desk.check("C1", "O1", Decimal("600.00"), "EUR", DAY))
        # not answered from memory (its first attempt is not committed yet): queued behind it
        await poll(_now(lambda: desk._in_flight["C1"]), lambda n: n == 2, timeout=10,
                   what="the retry decided")
        assert not retry.done() and not first.done()
        saves.gate.set()
        answer, again = await asyncio.wait_for(asyncio.gather(first, retry), 30)
        assert answer["decision"] == "approve" and again == answer
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and fresh.exposure("EUR") == Decimal("600.00")
    finally:
        await desk.stop()
        app.close()


async def test_a_writer_waiting_for_the_lock_goes_before_the_next_group(database_url: str) -> None:
    """The consumer or a command waiting for the write lock is let in once the groups in flight
    have committed, before checks queued meanwhile are decided."""
    app = CreditApplication(env=eventsourcing_env(database_url))
    store = StoreWriter()
    lock = store.lock
    desk = CheckDesk(app, store, ServiceMetrics("credit"), inline_saves=False)
    try:
        saves, first = await _saving_o1(app, desk, [])
        account = app.cached_account("C1")
        assert account is not None

        async def write() -> set[str]:
            async with lock:  # what the writer sees: the checks decided so far
                return set(account.checks)

        writer = asyncio.create_task(write())
        await poll(_now(lambda: lock.waiting), lambda waiting: waiting == 1, timeout=10,
                   what="the writer waiting")
        second = asyncio.create_task(desk.check("C1", "O2", Decimal("100.00"), "EUR", DAY))
        await poll(_now(lambda: bool(desk._queue) or "O2" in account.checks), bool, timeout=10,
                   what="O2 queued (or decided)")
        saves.gate.set()
        seen, answer, again = await asyncio.wait_for(asyncio.gather(writer, first, second), 30)
        assert seen == {"O1"}  # O2 was decided after the writer had its turn
        assert (answer["decision"], again["decision"]) == ("approve", "approve")
        assert lock.waiting == 0 and not lock.locked()
    finally:
        await desk.stop()
        app.close()


async def test_on_sqlite_a_group_is_saved_on_the_loop_once_no_other_writer_has_the_database(
    tmp_path: Path,
) -> None:
    app = CreditApplication(env=eventsourcing_env(f"sqlite:///{tmp_path / 'credit.db'}"))
    metrics = ServiceMetrics("credit")
    desk = CheckDesk(app, StoreWriter(), metrics)

    def saved(on: str) -> float:
        return metrics.registry.get_sample_value("receivables_credit_check_saves_total", {"on": on}) or 0

    def waits() -> float:
        return metrics.registry.get_sample_value("receivables_credit_check_turn_waits_total") or 0

    try:
        await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
        assert (await desk.check("C1", "O1", Decimal("10.00"), "EUR", DAY))["decision"] == "approve"
        assert (saved("loop"), saved("thread")) == (1, 0)
        # another writer (a thread here; the followers' process in the service) has the database
        turn = app.write_turn()
        assert turn is not None
        taken, done = threading.Event(), threading.Event()

        def other_writer() -> None:
            with turn:
                taken.set()
                done.wait(30)

        holder = threading.Thread(target=other_writer)
        holder.start()
        assert await asyncio.to_thread(taken.wait, 30)
        check = asyncio.create_task(desk.check("C1", "O2", Decimal("10.00"), "EUR", DAY))
        # the save thread waits for the turn; the loop goes on meanwhile
        await poll(_now(waits), lambda n: n == 1, timeout=10, what="the wait for the turn")
        assert not check.done()
        done.set()
        answer = await asyncio.wait_for(check, 30)
        await asyncio.to_thread(holder.join)
        assert answer["decision"] == "approve" and (saved("loop"), saved("thread")) == (2, 0)
        assert turn.try_acquire()  # given back
        turn.release()
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O1", "O2"}
    finally:
        await desk.stop()
        app.close()


async def test_a_check_on_an_account_another_replica_changed_is_decided_again_on_a_fresh_copy(
    database_url: str,
) -> None:
    app = CreditApplication(env=eventsourcing_env(database_url))
    other = CreditApplication(env=eventsourcing_env(database_url))  # another replica's
    desk = CheckDesk(app, StoreWriter(), ServiceMetrics("credit"))
    try:
        await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
        assert (await desk.check("C1", "O1", Decimal("600.00"), "EUR", DAY))["decision"] == "approve"

        def approve_elsewhere() -> None:
            account = other.account("C1")
            assert account is not None
            account.check("O2", Decimal("300.00"), "EUR", DAY, other.rules)
            other.save_tracked(account, tracking=None)

        await asyncio.to_thread(approve_elsewhere)
        # this replica's copy knows 600.00 of exposure (400.00 more would fit); the store 900.00
        answer = await desk.check("C1", "O3", Decimal("200.00"), "EUR", DAY)
        assert (answer["decision"], answer["exposure"]) == ("review", "900.00")
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O1", "O2", "O3"}
    finally:
        await desk.stop()
        app.close()
        other.close()


async def test_on_sqlite_checks_are_saved_while_the_projector_writes_its_own_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'credit.db'}"
    app = CreditApplication(env=eventsourcing_env(url))
    reader = CreditApplication(env=eventsourcing_env(url, cache_size=None))  # the followers'
    migrate_read_models(read_models_url(url))
    engine = make_engine(read_models_url(url), writer=True)
    metrics = ServiceMetrics("credit")
    desk = CheckDesk(app, StoreWriter(), metrics)
    try:
        await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
        taken, done = threading.Event(), threading.Event()

        def projector_writing() -> None:  # a transaction of the projector's: its file's write turn
            with engine.begin() as conn:
                conn.execute(positions.insert().values(name="someone-else", position=0))
                taken.set()
                done.wait(30)

        holder = threading.Thread(target=projector_writing)
        holder.start()
        try:
            assert await asyncio.to_thread(taken.wait, 30)
            answer = await asyncio.wait_for(desk.check("C1", "O1", Decimal("10.00"), "EUR", DAY), 10)
        finally:
            done.set()
            await asyncio.to_thread(holder.join)
        assert answer["decision"] == "approve"
        assert not metrics.registry.get_sample_value("receivables_credit_check_turn_waits_total")
        projector = CreditProjector(reader, engine)
        notifications = reader.recorder.select_notifications(1, 100)
        await asyncio.to_thread(projector.apply, notifications)
        with engine.connect() as conn:
            assert conn.execute(select(checks.c.order_id, checks.c.decision)).all() == [("O1", "approve")]
        with contextlib.closing(sqlite3.connect(tmp_path / "credit.db")) as events_file:  # the event store's
            tables = {name for (name,) in events_file.execute("SELECT name FROM sqlite_master")}
        assert "stored_events" in tables and "credit_checks" not in tables
    finally:
        await desk.stop()
        engine.dispose()
        app.close()
        reader.close()
