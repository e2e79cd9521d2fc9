"""Online replay: rebuilt read models identical to the live ones, an atomic switch that neither
loses nor doubles an event, the admin endpoint's scopes and the replays' audit record.

On SQLite and PostgreSQL alike (``database_url``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from services.ledger.read.projections import LIVE, LedgerProjector, metadata, movements, positions, replays
from services.ledger.replay.online import (
    OnlineReplay,
    ReplayBusy,
    VerificationFailed,
    checksums,
    replay_ledger,
)
from shared.db import make_engine
from shared.erp_events import parse_envelope, validate_event
from shared.settings import ServiceSettings
from shared.testing import fresh_postgres_database, wait_until
from tests.integration.ledger_books import OPERATOR, LedgerBook, invoice, payment
from tests.unit.test_ledger_properties import streams

_customers = itertools.count()
OPERATOR_AUTH = {"Authorization": f"Bearer {OPERATOR}"}
_ID_FIELDS = ("invoice_id", "payment_id", "credit_note_id", "dispute_id", "request_id", "refund_id",
              "prepayment_request_id")


def rekey(stream: list[dict[str, Any]], customer: str) -> list[dict[str, Any]]:
    """A generated one-customer stream as another customer's, every business id made its own."""
    result = []
    for raw in stream:
        message = copy.deepcopy(raw)
        message["id"] = f"{customer}-{message['id']}"
        message["subject"] = message["data"]["customer_id"] = customer
        data = message["data"]
        for field in _ID_FIELDS:
            if field in data:
                data[field] = f"{customer}-{data[field]}"
        for allocation in data.get("allocations") or ():
            allocation["invoice_id"] = f"{customer}-{allocation['invoice_id']}"
        result.append(message)
    return result


def feed(book: LedgerBook, messages: list[dict[str, Any]], batch: int) -> None:
    """Through the real application in uneven batches (refusals are dead letters: skipped)."""
    for start in range(0, len(messages), batch):
        decoded = [validate_event(parse_envelope(m), topic="ar.test", partition=0, offset=start + i)
                   for i, m in enumerate(messages[start:start + batch])]
        prepared = book.app.prepare(decoded)
        book.app.commit(prepared)


def project_live(book: LedgerBook, batch: int = 7) -> None:
    while notifications := book.app.recorder.select_notifications(book.position + 1, batch):
        book.projector.apply(notifications)
        book.position = notifications[-1].id


@contextlib.contextmanager
def fresh_database_like(database_url: str) -> Iterator[str]:
    """Another empty database of the same kind: each generated example starts from nothing."""
    if database_url.startswith("sqlite"):
        yield f"{database_url}.{next(_customers)}"
    else:
        with fresh_postgres_database(database_url) as url:
            yield url


def alembic_differences(conn: Connection) -> list[Any]:
    """What Alembic would change to match the read models' metadata (the event store's tables,
    which the library owns, aside)."""
    context = MigrationContext.configure(conn, opts={"version_table": "ledger_alembic_version"})
    ours = set(metadata.tables)
    return [diff for diff in compare_metadata(context, metadata) if _table_of(diff) in ours
            or str(_table_of(diff)).startswith("replay_")]


def _table_of(diff: Any) -> str | None:
    if isinstance(diff, list):  # column changes: [(op, schema, table, column, ...)]
        return str(diff[0][2])
    target = diff[1]
    table = getattr(target, "table", target)
    return getattr(table, "name", None)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generated=st.lists(streams(), min_size=1, max_size=4), batch=st.integers(1, 13))
def test_a_replay_of_a_generated_book_is_identical_to_the_live_read_models(
    database_url: str, generated: list[list[dict[str, Any]]], batch: int
) -> None:
    with fresh_database_like(database_url) as url:
        replay_generated_book(url, generated, batch)


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generated=st.lists(streams(), min_size=2, max_size=4), batch=st.integers(1, 5),
       memory_limit=st.integers(0, 30))
def test_a_replay_past_its_memory_limit_goes_on_from_the_tables_to_the_same_read_models(
    database_url: str, generated: list[list[dict[str, Any]]], batch: int, memory_limit: int
) -> None:
    with fresh_database_like(database_url) as url:
        replay_generated_book(url, generated, batch, memory_limit=memory_limit)


def replay_generated_book(
    database_url: str, generated: list[list[dict[str, Any]]], batch: int, *, memory_limit: int | None = None,
) -> None:
    book = LedgerBook(database_url)
    writer = make_engine(database_url, writer=True)
    try:
        messages = [m for stream in generated for m in rekey(stream, f"G{next(_customers)}")]
        feed(book, messages, batch)
        book.position = 0
        project_live(book)
        live = checksums(book.engine)
        limit = {} if memory_limit is None else {"memory_limit": memory_limit}
        replayer = OnlineReplay(book.app, writer, batch_size=batch + 2, **limit)
        result = replayer.run(verify=True)
        assert result.verified and result.checksums == live  # compared inside the switch
        assert checksums(book.engine) == live  # and what was switched in is still that
        with book.engine.connect() as conn:
            assert alembic_differences(conn) == []
    finally:
        writer.dispose()
        book.close()


def _customer_events(customer: str, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        events.append(invoice(customer, f"{customer}-I{i}", f"{100 + i}.00", "2024-03-01", "2024-03-31"))
        if i % 2:
            events.append(payment(customer, f"{customer}-P{i}", "60.00", "2024-03-15", to=f"{customer}-I{i}"))
    return events


def commit(book: LedgerBook, events: list[dict[str, Any]]) -> None:
    book.app.commit(book.app.prepare([validate_event(parse_envelope(e)) for e in events]))


def movements_per_event(conn: Connection) -> dict[int, int]:
    query = select(movements.c.position, func.count()).group_by(movements.c.position)
    return {int(position): int(count) for position, count in conn.execute(query)}


def _waiting_for_a_lock(conn: Connection) -> bool:
    """Is a session of this database waiting for a lock (here: the projector, for the switch's)?"""
    waiting = bool(conn.execute(text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )).scalar())
    conn.rollback()  # pg_stat_activity is a snapshot per transaction: the next look needs a new one
    return waiting


def test_the_switch_neither_loses_nor_doubles_events_of_a_projector_running_across_it(
    database_url: str,
) -> None:
    """The live projector lags, runs during the build, and is blocked by the switch with a batch
    that spans the switch's position; afterwards every event is in the new tables exactly once."""
    book = LedgerBook(database_url)
    writer = make_engine(database_url, writer=True)
    book.projector = LedgerProjector(book.app, writer)  # as in the service: SQLite writers BEGIN IMMEDIATE
    postgres = writer.dialect.name == "postgresql"
    for customer in ("A1", "A2"):
        book.post(*_customer_events(customer, 6))  # projected live
    stale = book.position
    commit(book, _customer_events("B1", 5))
    during_build: list[int] = []
    blocked: dict[str, Any] = {}

    def while_building(progress: Any) -> None:
        if not during_build:  # more events arrive; the live projector takes some of them
            commit(book, _customer_events("C1", 5))
            notifications = book.app.recorder.select_notifications(book.position + 1, 9)
            book.projector.apply(notifications)
            book.position = notifications[-1].id
        during_build.append(progress.position)

    def holding_the_switch(conn: Connection, position: int) -> None:
        # the live projector, with a batch from before the switch's position to the end of the
        # log, tries to apply it while the switch holds the lock: it must wait
        batch = book.app.recorder.select_notifications(stale + 1, 10_000)
        assert batch[0].id <= position == batch[-1].id
        thread = threading.Thread(target=lambda: blocked.setdefault("done", book.projector.apply(batch)))
        thread.start()
        blocked["thread"] = thread
        if postgres:
            with book.engine.connect() as probe:
                wait_until(lambda: _waiting_for_a_lock(probe), timeout=20, interval=0.01,
                           what="the projector waiting for the switch")
        assert thread.is_alive()

    try:
        replayer = OnlineReplay(book.app, writer, batch_size=4, progress=while_building,
                                before_commit=holding_the_switch)
        result = replayer.run(verify=True)
        blocked["thread"].join(timeout=30)
        assert "done" in blocked and len(during_build) > 1
        # still more events; a projector that starts from a stale position skips what is in
        commit(book, _customer_events("D1", 3))
        book.position = stale
        project_live(book, batch=5)
        with book.engine.connect() as conn:
            last = book.app.recorder.max_notification_id()
            assert conn.execute(select(positions.c.position)).scalar() == last > result.position
            live_counts = movements_per_event(conn)
        # the same book replayed from scratch: identical, so nothing was lost or applied twice
        again = OnlineReplay(book.app, writer).run(verify=True)
        assert again.position == last
        with book.engine.connect() as conn:
            assert movements_per_event(conn) == live_counts
            assert alembic_differences(conn) == []
    finally:
        writer.dispose()
        book.close()


def test_one_replay_at_a_time(database_url: str, tmp_path: Path) -> None:
    book = LedgerBook(database_url)
    first, second = make_engine(database_url, writer=True), make_engine(database_url, writer=True)
    try:
        book.post(*_customer_events("E1", 2))
        holder = OnlineReplay(book.app, first, lock_path=tmp_path / "lock")
        with holder._exclusive(), pytest.raises(ReplayBusy):
            OnlineReplay(book.app, second, lock_path=tmp_path / "lock").run(verify=False)
        OnlineReplay(book.app, second, lock_path=tmp_path / "lock").run(verify=False)  # free again
    finally:
        first.dispose()
        second.dispose()
        book.close()


# ------------------------------------------------------------------ the admin endpoint and the record


async def _wait_finished(client: Any, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/admin/replays/{run_id}", headers=OPERATOR_AUTH)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, body
        await _yield()


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.02)  # polling: let the replay's task run


async def test_admin_replay_needs_ops_replay_and_is_recorded_with_who_asked(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    book = LedgerBook(database_url)
    book.post(*_customer_events("H1", 3))
    try:
        async with book.api(tmp_path) as client:
            anonymous = await client.post("/admin/replay", headers={"Authorization": ""})
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"
            reader = await client.post("/admin/replay")  # the client's default token: ledger:read
            assert reader.status_code == 403 and reader.json()["required_scope"] == "ops:replay"
            assert (await client.get("/admin/replays")).status_code == 403
            live = checksums(book.engine)

            operator = OPERATOR_AUTH
            started = await client.post("/admin/replay", json={"verify": True}, headers=operator)
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            assert started.headers["location"] == f"/admin/replays/{run_id}"
            assert started.json()["requested_by"] == "ops-alice"
            finished = await _wait_finished(client, run_id)
            assert finished["status"] == "switched", finished
            assert finished["requested_by"] == "ops-alice" and finished["via"] == "api"
            assert finished["verify"] is True and finished["detail"].startswith("verified")
            assert [e["type"] for e in finished["recorded_events"]] == ["ReplayRequested", "ReplayFinished"]
            assert finished["position"] == book.app.recorder.max_notification_id() - 1  # before its own end
            assert checksums(book.engine)["ledger_invoices"] == live["ledger_invoices"]

            # the command line records the operating-system user
            monkeypatch.setenv("RECEIVABLES_DATABASE_URL", database_url)
            # ... and holds no more rows in memory than its setting allows
            settings_ = ServiceSettings.for_service("ledger", database_url=database_url, replay_memory_rows=0)
            monkeypatch.setattr("services.ledger.replay.runs.getpass.getuser", lambda: "carol")
            with caplog.at_level(logging.WARNING, logger="services.ledger.replay"):
                assert replay_ledger(settings_, verify=True) == 0
            assert "more than 0 rows held" in caplog.text
            book.project()
            listed = (await client.get("/admin/replays", headers=operator)).json()["replays"]
            assert [(r["requested_by"], r["via"], r["status"]) for r in listed] == [
                ("os:carol", "cli", "switched"), ("ops-alice", "api", "switched")]
            with book.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(replays)).scalar() == 2
            assert (await client.get("/admin/replays/nope", headers=operator)).status_code == 404
            # the outbox publishes nothing of a replay's record
            from services.ledger.outbound import translate

            records = [book.app.mapper.to_domain_event(n)
                       for n in book.app.recorder.select_notifications(1, 10_000)]
            of_replays = [e for e in records if type(e).__qualname__.startswith("ReplayRun.")]
            assert len(of_replays) == 4 and not any(translate(e) for e in of_replays)
    finally:
        book.close()


def test_nothing_is_left_behind_by_switches(database_url: str) -> None:
    book = LedgerBook(database_url)
    writer = make_engine(database_url, writer=True)
    try:
        book.post(*_customer_events("K1", 2))
        for _ in range(2):
            OnlineReplay(book.app, writer).run(verify=False)
        with book.engine.connect() as conn:
            assert alembic_differences(conn) == []
            if writer.dialect.name == "sqlite":
                left = [r[0] for r in conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE name LIKE 'replay%'"))]
            else:
                left = [r[0] for r in conn.execute(text(
                    "SELECT nspname FROM pg_namespace WHERE nspname IN ('ledger_replay', 'ledger_retired')"))]
            assert left == []
    finally:
        writer.dispose()
        book.close()


# ------------------------------------------------------------------ the running service, through Kafka


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A broker of the test's own with the ledger's topics."""
    from tests.integration.ledger_harness import create_ledger_topics, start_broker

    broker = start_broker(tmp_path / "tansu.log")
    try:
        create_ledger_topics(broker)
        yield broker
    finally:
        broker.stop()


def _traffic(prefix: str, customers: int, invoices: int) -> list[dict[str, Any]]:
    from tests.integration.ledger_harness import invoice_issued, payment_received

    events = []
    for c in range(customers):
        customer = f"{prefix}{c}"
        for i in range(invoices):
            events.append(invoice_issued(customer, f"{customer}-I{i}", f"{100 + i}.00"))
            if i % 2:
                events.append(payment_received(customer, f"{customer}-P{i}", "70.00"))
    return events


async def test_an_online_replay_while_the_service_consumes_loses_and_doubles_nothing(
    database_url: str, broker: Any,
) -> None:
    """The service consumes from Kafka (its projector in its followers process) while
    ``POST /admin/replay`` rebuilds and switches; REST answers all along; afterwards the live
    read models are identical to a rebuild of the whole event store."""
    import asyncio

    from services.ledger.application import LedgerApplication
    from shared.eventstore import eventsourcing_env
    from tests.integration.ledger_harness import (
        InProcessLedger,
        Publisher,
        count_stored_events,
        ledger_settings,
        max_notification_id,
        poll,
    )

    before, during, after = _traffic("R", 10, 40), _traffic("S", 10, 40), _traffic("T", 5, 10)
    customers = 25
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger, \
            Publisher(broker.bootstrap) as publisher:
        await publisher.send_all(before)
        await poll(lambda: asyncio.to_thread(count_stored_events, database_url),
                   lambda n: n == len(before) + 10, timeout=60, what="the first traffic stored")
        await ledger.wait_metric("receivables_follower_position{follower=ledger-projections}",
                                 max_notification_id(database_url), timeout=60)
        publishing = asyncio.create_task(publisher.send_all(during))
        started = await ledger.http.post("/admin/replay", json={"verify": True})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        reads = 0
        deadline = time.monotonic() + 60
        while True:
            answer = await ledger.get("/customers/R0/balance")
            assert answer.status_code == 200, answer.text
            reads += 1
            status = (await ledger.json(f"/admin/replays/{run_id}"))["status"]
            if status != "running":
                break
            assert time.monotonic() < deadline, "the replay did not finish"
        assert status == "switched", await ledger.json(f"/admin/replays/{run_id}")
        assert reads >= 1
        await publishing
        await publisher.send_all(after)
        expected = len(before) + len(during) + len(after) + customers + 2  # and the replay's record
        await poll(lambda: asyncio.to_thread(count_stored_events, database_url),
                   lambda n: n == expected, timeout=60, what="every message stored")
        last = max_notification_id(database_url)
        await ledger.wait_metric("receivables_follower_position{follower=ledger-projections}", last,
                                 timeout=60)
        # a second replay, from this test's process, verifies the live tables row for row
        app = LedgerApplication(env=eventsourcing_env(database_url, cache_size=None))
        writer = make_engine(database_url, writer=True)
        try:
            result = await asyncio.to_thread(OnlineReplay(app, writer).run, verify=True)
        finally:
            writer.dispose()
            app.close()
        assert result.verified and result.position == last
        listed = (await ledger.json("/admin/replays"))["replays"]
        assert [(r["run_id"], r["requested_by"], r["via"], r["status"]) for r in listed] == [
            (run_id, "anonymous", "api", "switched")]
        balance = await ledger.json("/customers/S9/balance", as_of="2030-01-01")
        assert balance["balances"][0]["open_amount"] == str(sum(100 + i for i in range(40)) - 20 * 70) + ".00"


def test_a_difference_aborts_the_switch_and_leaves_the_live_tables(database_url: str) -> None:
    book = LedgerBook(database_url)
    writer = make_engine(database_url, writer=True)
    try:
        book.post(*_customer_events("V1", 3))
        with book.engine.begin() as conn:  # a live row that the events do not give
            conn.execute(LIVE.invoices.update().where(LIVE.invoices.c.invoice_id == "V1-I1")
                         .values(open_amount=Decimal("1.00")))
        damaged = checksums(book.engine)
        with pytest.raises(VerificationFailed, match="ledger_invoices"):
            OnlineReplay(book.app, writer).run(verify=True)
        assert checksums(book.engine) == damaged  # nothing was switched
        OnlineReplay(book.app, writer).run(verify=False)  # without the check, the rebuild repairs it
        with book.engine.connect() as conn:
            repaired = conn.execute(select(LIVE.invoices.c.open_amount)
                                    .where(LIVE.invoices.c.invoice_id == "V1-I1")).scalar_one()
        assert repaired == Decimal("41.00")  # 101.00 issued, 60.00 paid
    finally:
        writer.dispose()
        book.close()
