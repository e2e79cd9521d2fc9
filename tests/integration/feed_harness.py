"""Helpers shared by the tests of the services that follow the ledger's feed (dunning, credit).

- :func:`own_broker`, :func:`create_service_topics`: a broker of the test's own, a service's topics;
- :func:`service_database_url`: the service's event store next to the ledger's (a SQLite file
  of its own: the library names SQLite tables the same for every app);
- :func:`ledger_messages`: ``ar.ledger.events`` messages made by the ledger's own outbound
  translation of ERP messages;
- :func:`feed_bad_and_twice`: undecodable messages, then customer H's good ones twice;
- :func:`found`: a view's JSON, or None for a 404;
- :func:`published_once`: a service's published messages, each once (a repeat is the same);
- :func:`dead_letter_reasons`: the reasons of the dead letters, once there are so many.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy.engine import make_url

from shared.broker import EmbeddedBroker, create_topics
from tests.integration.ledger_harness import (
    DEADLETTER_TOPIC,
    OUTBOUND_TOPIC,
    PARTITIONS,
    Publisher,
    cloud_event,
    encode,
    invoice_issued,
    payment_received,
    read_topic,
    start_broker,
)


@contextmanager
def own_broker(log_path: Path, topics: dict[str, int]) -> Iterator[EmbeddedBroker]:
    broker = start_broker(log_path)
    try:
        create_service_topics(broker, topics)
        yield broker
    finally:
        broker.stop()


def create_service_topics(broker: EmbeddedBroker, topics: dict[str, int]) -> None:
    created = create_topics(broker.bootstrap, topics)
    assert all(count == PARTITIONS for count in created.values()), created


def service_database_url(database_url: str, service: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return f"sqlite:///{url.database.removesuffix('.db')}-{service}.db"
    return database_url


def ledger_messages(*erp: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """(key, value) of what the ledger publishes for these ERP messages (one customer's, in order)."""
    from services.ledger.domain import CustomerAccount
    from services.ledger.outbound import translate
    from shared.erp_events import parse_envelope, validate_event

    ledger = CustomerAccount(erp[0]["subject"])
    for event in erp:
        ledger.handle(validate_event(parse_envelope(event)))
    return [(o.key.encode(), o.value) for e in ledger.collect_events() for o in translate(e)]


def h_messages() -> list[tuple[bytes, bytes]]:
    """Customer H's ledger messages: invoice H-1 of 400.00, then a payment of 150.00 on it."""
    return ledger_messages(invoice_issued("H", "H-1", "400.00", issue="2025-01-01", due="2025-01-31"),
                           payment_received("H", "PH-1", "150.00", received="2025-01-10"))


async def feed_bad_and_twice(publisher: Publisher, bad: list[tuple[bytes, bytes]],
                             messages: list[tuple[bytes, bytes]]) -> None:
    """On ``ar.ledger.events``: a message that is not JSON, an invoice without its currency,
    ``bad``, then every one of ``messages`` twice."""
    unreadable = [(b"H", b"not json"), (b"H", encode(cloud_event(
        "ledger.invoice_opened", {"customer_id": "H", "invoice_id": "H-9"}, event_id="bad-1")))]
    for key, value in [*unreadable, *bad, *messages, *messages]:
        await publisher.send_raw(OUTBOUND_TOPIC, key, value)


def found(response: httpx.Response) -> dict[str, Any] | None:
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


def published_once(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    """The messages, decoded, each once; each keyed by its customer, a repeat the same message."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        event = orjson.loads(record.value)
        assert record.key == event["subject"].encode() == event["data"]["customer_id"].encode()
        assert by_id.setdefault(event["id"], event) == event
    return list(by_id.values())


async def dead_letter_reasons(bootstrap: str, count: int, timeout: float) -> list[str]:
    dead = await read_topic(bootstrap, DEADLETTER_TOPIC, timeout=timeout, until=lambda rs: len(rs) >= count)
    return sorted(orjson.loads(r.value)["data"]["reason"] for r in dead)
