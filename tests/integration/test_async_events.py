"""The event loop's PostgreSQL writer (``shared.async_events``): one statement a save, and
the library's transaction all the same: rows the library reads back in order, its NOTIFY
sent, a version conflict refused whole, and replicas defining the function together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from services.credit.application import CreditApplication
from shared.async_events import AsyncEventWriter
from shared.eventstore import eventsourcing_env, postgres_conninfo
from shared.testing import fresh_postgres_database

DAY = date(2025, 3, 1)


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_postgres_database(postgres_url) as url:
        yield url


def _checked(app: CreditApplication, customer_id: str, *orders: str) -> list[object]:
    """A customer's limit saved the library's way, then checks collected, not yet saved."""
    app.set_limit(customer_id, "EUR", Decimal("1000.00"), "carol", None, None)
    account = app.cached_account(customer_id)
    assert account is not None
    for order in orders:
        account.check(order, Decimal("10.00"), "EUR", DAY, app.rules)
    return account.collect_events()


async def test_a_save_is_the_librarys_rows_and_notify_in_one_statement(pg_url: str) -> None:
    app = CreditApplication(env=eventsourcing_env(pg_url))
    writer = AsyncEventWriter(app)
    listener = await psycopg.AsyncConnection.connect(postgres_conninfo(app.env), autocommit=True)
    try:
        await listener.execute(f'LISTEN "{app.recorder.channel_name}"')  # type: ignore[attr-defined]
        events = await asyncio.to_thread(_checked, app, "C1", "O1", "O2")
        before = app.recorder.max_notification_id() or 0
        await writer.save(events)
        notified = await asyncio.wait_for(anext(listener.notifies()), timeout=10)
        assert notified.channel == app.recorder.channel_name  # type: ignore[attr-defined]
        stored = app.recorder.select_notifications(before + 1, 10)
        assert [(n.originator_version, n.topic.rsplit(".", 1)[1]) for n in stored] == [
            (3, "CreditChecked"), (4, "CreditChecked")]
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and set(fresh.checks) == {"O1", "O2"}
    finally:
        await listener.close()
        await writer.close()
        app.close()


async def test_a_version_conflict_is_the_librarys_integrity_error_and_saves_nothing(pg_url: str) -> None:
    app = CreditApplication(env=eventsourcing_env(pg_url))
    writer = AsyncEventWriter(app)
    try:
        events = await asyncio.to_thread(_checked, app, "C1", "O1")
        await writer.save(events)
        again = await asyncio.to_thread(_checked, app, "C2", "O9")  # a new customer's, with...
        stored = app.recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            await writer.save([*again, *events])  # ...a version already stored
        assert app.recorder.max_notification_id() == stored  # the whole group refused
        await writer.save(again)  # the connection goes on
        saved = app.recorder.select_notifications((stored or 0) + 1, 10)
        assert [(n.originator_id, n.originator_version) for n in saved] == [
            (e.originator_id, e.originator_version) for e in again]  # type: ignore[attr-defined]
    finally:
        await writer.close()
        app.close()


async def test_replicas_connecting_together_define_the_function_one_at_a_time(pg_url: str) -> None:
    apps = [CreditApplication(env=eventsourcing_env(pg_url)) for _ in range(4)]
    writers = [AsyncEventWriter(app) for app in apps]
    try:
        events = [await asyncio.to_thread(_checked, app, f"C{i}", f"O{i}") for i, app in enumerate(apps)]
        await asyncio.gather(*(writer.save(batch) for writer, batch in zip(writers, events, strict=True)))
        for i, app in enumerate(apps):
            fresh = await asyncio.to_thread(app.account, f"C{i}", fresh=True)
            assert fresh is not None and set(fresh.checks) == {f"O{i}"}
    finally:
        for writer in writers:
            await writer.close()
        for app in apps:
            app.close()
