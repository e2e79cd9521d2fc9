"""A loop that keeps failing on the same event makes the service unready, and only that.

The ledger runs for real (embedded broker, SQLite and PostgreSQL); the database itself is
made to refuse one event with a trigger, as a read model that cannot hold a value would.
The service must turn ``/health/ready`` to 503 naming the stage, the event and the error,
show it in ``/metrics``, keep answering ``/health/live``, skip nothing, and be ready again
by itself once the trigger is gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.broker import EmbeddedBroker
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    invoice_issued,
    ledger_settings,
    poll,
)

WAIT = 30.0
# Long enough that a failed batch (retried one notification at a time 0.2 s later) never
# counts as stuck: only the event that keeps failing does.
STUCK_AFTER = 2.0
REFUSAL = "the test refuses it"


def _execute(database_url: str, *statements: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def refuse(database_url: str, table: str, when: str) -> None:
    """A trigger that makes every insert into ``table`` for which ``when`` holds fail."""
    if _postgres(database_url):
        _execute(
            database_url,
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {when} THEN RAISE EXCEPTION '{REFUSAL}'; END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER test_refuse BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse()",
        )
    else:
        _execute(database_url, f"CREATE TRIGGER test_refuse BEFORE INSERT ON {table} WHEN {when} "
                               f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")


def allow(database_url: str, table: str) -> None:
    if _postgres(database_url):
        _execute(database_url, f"DROP TRIGGER test_refuse ON {table}", "DROP FUNCTION test_refuse()")
    else:
        _execute(database_url, "DROP TRIGGER test_refuse")


def events_table(database_url: str) -> str:
    return "ledger_events" if _postgres(database_url) else "stored_events"


def notification_of(database_url: str, invoice_id: str) -> int:
    """The notification id of the one stored event that names ``invoice_id``."""
    if _postgres(database_url):
        query = ("SELECT notification_id FROM ledger_events "
                 "WHERE convert_from(state, 'UTF8') LIKE :pattern")
    else:
        query = "SELECT rowid FROM stored_events WHERE CAST(state AS TEXT) LIKE :pattern"
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            [notification_id] = conn.execute(text(query), {"pattern": f'%"{invoice_id}"%'}).scalars().all()
    finally:
        engine.dispose()
    return int(notification_id)


async def ready_status(ledger: InProcessLedger, status: int, what: str) -> httpx.Response:
    return await poll(lambda: ledger.get("/health/ready"), lambda r: r.status_code == status,
                      timeout=WAIT, what=what)


def only_stuck(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["type"].endswith("/not-ready") and body["status"] == 503, body
    assert body["checks"] == {"database": True, "kafka": True, "progress": False}, body
    [stuck] = body["stuck"]
    assert stuck["stage"] in body["detail"], body
    assert stuck["seconds"] >= STUCK_AFTER and stuck["failures"] >= 1, stuck
    assert REFUSAL in stuck["error"]["message"] and stuck["error"]["type"], stuck
    return dict(stuck)


@pytest.mark.parametrize("followers", ["process", "inline"])
async def test_a_projector_stuck_on_an_event_makes_the_service_unready_until_it_gets_past(
    broker: EmbeddedBroker, database_url: str, followers: str
) -> None:
    settings = ledger_settings(broker.bootstrap, database_url, followers=followers,
                               stuck_after_seconds=STUCK_AFTER)
    async with InProcessLedger(settings) as ledger:
        await ready_status(ledger, 200, "ready at the start")
        await asyncio.to_thread(refuse, database_url, "ledger_invoices", "NEW.invoice_id = 'STUCK-2'")
        async with Publisher(broker.bootstrap) as publisher:
            await publisher.send_all(invoice_issued("STUCK", f"STUCK-{n}", "100.00") for n in (1, 2, 3))

        stuck = only_stuck(await ready_status(ledger, 503, "unready: the projector is stuck"))
        notification = await asyncio.to_thread(notification_of, database_url, "STUCK-2")
        assert stuck["stage"] == "ledger-projections"
        assert stuck["event"]["notification_id"] == notification  # that one event, not its batch
        assert stuck["event"]["originator_version"] == 3  # the account's Opened, STUCK-1, STUCK-2
        # nothing skipped: the invoice before it is projected, the one after it is not
        assert await ledger.invoice("STUCK-1") is not None
        assert await ledger.invoice("STUCK-3") is None
        metrics = await ledger.metrics()
        labels = f"event=notification {notification},stage=ledger-projections"
        assert metrics[f"receivables_stuck{{{labels}}}"] == 1
        assert metrics[f"receivables_stuck_seconds{{{labels}}}"] >= STUCK_AFTER
        assert metrics["receivables_stuck{event=,stage=outbox}"] == 0
        assert (await ledger.get("/health/live")).status_code == 200  # not a restart matter

        await asyncio.to_thread(allow, database_url, "ledger_invoices")
        assert (await ready_status(ledger, 200, "ready again"))
        assert await ledger.invoice("STUCK-2") is not None
        # ready once past STUCK-2; STUCK-3 comes in the projector's next step (a race otherwise)
        await poll(lambda: ledger.invoice("STUCK-3"), lambda found: found is not None, timeout=30,
                   what="STUCK-3 projected after the stuck one")
        metrics = await ledger.metrics()
        assert metrics["receivables_stuck{event=,stage=ledger-projections}"] == 0
        assert f"receivables_stuck{{{labels}}}" not in metrics


async def test_a_consumer_that_cannot_commit_a_batch_makes_the_service_unready_until_it_does(
    broker: EmbeddedBroker, database_url: str
) -> None:
    settings = ledger_settings(broker.bootstrap, database_url, stuck_after_seconds=STUCK_AFTER)
    async with InProcessLedger(settings) as ledger:
        await ready_status(ledger, 200, "ready at the start")
        await asyncio.to_thread(refuse, database_url, events_table(database_url), "1 = 1")
        async with Publisher(broker.bootstrap) as publisher:
            ack = await publisher.send(invoice_issued("JAM", "JAM-1", "100.00"))

        stuck = only_stuck(await ready_status(ledger, 503, "unready: the consumer is stuck"))
        assert stuck["stage"] == "consumer"
        assert stuck["event"] == {"topic": "ar.invoices", "partition": ack.partition, "offset": ack.offset,
                                  "last_offset": ack.offset}
        assert await ledger.invoice("JAM-1") is None
        metrics = await ledger.metrics()
        where = f"ar.invoices[{ack.partition}]@{ack.offset}"
        assert metrics[f"receivables_stuck{{event={where},stage=consumer}}"] == 1
        assert (await ledger.get("/health/live")).status_code == 200

        await asyncio.to_thread(allow, database_url, events_table(database_url))
        await ready_status(ledger, 200, "ready again")
        await poll(lambda: ledger.invoice("JAM-1"), lambda invoice: invoice is not None, timeout=WAIT,
                   what="the batch committed and projected")
        assert (await ledger.metrics())["receivables_stuck{event=,stage=consumer}"] == 0
