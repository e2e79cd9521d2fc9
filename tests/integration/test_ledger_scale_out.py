"""Scale-out (issue 6): two ledger replicas in one consumer group on one PostgreSQL store.

100,000 messages are published; two replicas share the partitions; one is SIGKILLed
half-way and a third is started. Afterwards: every partition's stored position is at its
end, every message was applied exactly once (one event per message, no dedupe key twice),
the balances are the arithmetic's, the projections are complete, and ``ar.ledger.events``
carries every domain event's outbound messages (at least once; only the replica holding
the followers' leadership publishes).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from services.ledger import outbound
from services.ledger.application import LedgerApplication
from shared.broker import EmbeddedBroker
from shared.eventstore import eventsourcing_env
from shared.testing import fresh_postgres_database
from tests.integration.ledger_harness import (
    OUTBOUND_TOPIC,
    LedgerProcess,
    Publisher,
    alive,
    balance_rows,
    invoice_issued,
    ledger_env,
    max_notification_id,
    origin_keys,
    payment_received,
    poll,
    read_topic,
    stored_events,
    tracked_positions,
)

CUSTOMERS = 2500
INVOICES = 20  # per customer, each with a partial payment: 100,000 messages


def book() -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
    events: list[dict[str, Any]] = []
    expected: dict[str, Decimal] = {}
    for c in range(CUSTOMERS):
        customer = f"SCALE-{c:05d}"
        expected[customer] = Decimal(0)
        for i in range(INVOICES):
            invoice = f"{customer}-I{i:02d}"
            amount = Decimal(f"{200 + (c * 11 + i * 7) % 800}.{(c + i) % 100:02d}")
            paid = Decimal(f"{(c + 5 * i) % 150 + 1}.25")
            day = 1 + i
            events.append(invoice_issued(customer, invoice, str(amount), issue=f"2024-05-{day:02d}",
                                         due=f"2024-06-{day:02d}"))
            events.append(payment_received(customer, f"{customer}-P{i:02d}", str(paid),
                                           received=f"2024-05-{day + 5:02d}",
                                           allocations=[(invoice, str(paid))]))
            expected[customer] += amount - paid
    return events, expected


def projected_position(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text(
                "SELECT position FROM ledger_projection_positions WHERE name = 'ledger-projections'"
            )).scalar()
    finally:
        engine.dispose()
    return int(value or 0)


def expected_outbound_ids(database_url: str) -> set[str]:
    """The ids of every outbound message the stored events give rise to."""
    ledger = LedgerApplication(env=eventsourcing_env(database_url, cache_size=None))
    try:
        ids: set[str] = set()
        start = 1
        while notifications := ledger.recorder.select_notifications(start, 5000):
            for notification in notifications:
                for message in outbound.translate(ledger.mapper.to_domain_event(notification)):
                    ids.add(message_id(message.value))
            start = notifications[-1].id + 1
        return ids
    finally:
        ledger.close()


def message_id(value: bytes) -> str:
    import orjson

    return str(orjson.loads(value)["id"])


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database: replicas share PostgreSQL, not SQLite."""
    with fresh_postgres_database(postgres_url) as url:
        yield url


@pytest.mark.slow
async def test_two_replicas_one_killed_half_way_then_another_started(
    broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    events, expected = book()
    async with Publisher(broker.bootstrap) as publisher:
        acks = await publisher.send_all(events)
    ends: dict[str, int] = {}
    for meta in acks:
        name = f"{meta.topic}:{meta.partition}"
        ends[name] = max(ends.get(name, -1), meta.offset)

    env = ledger_env(broker.bootstrap, database_url, RECEIVABLES_CONSUMER_GROUP="scale-out")
    replicas = [LedgerProcess(env, tmp_path / f"ledger-{n}.log") for n in range(3)]
    first, second, third = replicas
    try:
        first.start()
        second.start()
        await asyncio.gather(first.wait_live(), second.wait_live())

        async def processed_by_both() -> float:
            totals = await asyncio.gather(first.metrics(), second.metrics())
            return sum(t.get("receivables_messages_processed_total", 0) for t in totals)

        # both replicas consume (the group split the partitions), then one dies half-way
        await poll(lambda: asyncio.gather(first.metrics(), second.metrics()),
                   lambda both: all(m.get("receivables_messages_processed_total", 0) > 0 for m in both),
                   timeout=90, what="both replicas consuming", interval=0.2)
        await poll(processed_by_both, lambda n: n >= len(events) // 2, timeout=120,
                   what="half the book consumed", interval=0.2)
        followers = first.kill()
        await poll(lambda: asyncio.sleep(0, [p for p in followers if alive(p)]), lambda left: not left,
                   timeout=30, what="the killed replica's followers process exits")
        third.start()
        await third.wait_live()

        await poll(
            lambda: asyncio.to_thread(tracked_positions, database_url),
            lambda positions: all(positions.get(name) == end for name, end in ends.items()),
            timeout=180, what="every inbound partition consumed to its end", interval=0.5,
        )
        last = max_notification_id(database_url)
        await poll(lambda: asyncio.to_thread(projected_position, database_url), lambda p: p == last,
                   timeout=120, what="projections at the last event", interval=0.5)

        # exactly once: one event per message plus one per account, no dedupe key twice
        stored = stored_events(database_url)
        assert len(stored) == len(events) + CUSTOMERS
        assert Counter(kind for kind, _ in stored) == {
            "Opened": CUSTOMERS, "InvoiceIssued": len(events) // 2, "CreditReceived": len(events) // 2,
        }
        keys = Counter(origin_keys(stored))
        assert max(keys.values()) == 1 and len(keys) == len(events)

        rows = balance_rows(database_url)
        assert {c: r["open_amount"] for (c, _), r in rows.items()} == expected

        # every domain event published at least once, whichever replica led the outbox
        wanted = await asyncio.to_thread(expected_outbound_ids, database_url)
        records = await read_topic(
            broker.bootstrap, OUTBOUND_TOPIC,
            until=lambda rs: wanted <= {message_id(r.value) for r in rs if r.value is not None},
            timeout=180,
        )
        published = {message_id(r.value) for r in records if r.value is not None}
        assert wanted - published == set()
    except BaseException:
        for replica in replicas:
            print(replica.log_tail())
        raise
    finally:
        for replica in replicas:
            replica.terminate()
            await replica.close()
