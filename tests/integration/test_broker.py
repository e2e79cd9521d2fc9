"""Integration tests for the embedded Tansu broker and the database fixtures."""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.broker import BrokerError, EmbeddedBroker, create_topics, free_port
from shared.testing import fresh_postgres_database

# Budget for any single "wait until X" in these tests.
DEADLINE_S = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


async def consume(
    consumer: AIOKafkaConsumer, count: int, deadline_s: float = DEADLINE_S
) -> list[ConsumerRecord[bytes, bytes]]:
    """Poll *consumer* until *count* records arrived or the deadline passes."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=100)
        for batch in batches.values():
            records.extend(batch)
    return records


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def fake_broker(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-tansu"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


# -- broker ------------------------------------------------------------------


def test_session_broker_is_up(kafka_broker: EmbeddedBroker) -> None:
    assert kafka_broker.is_running
    assert kafka_broker.bootstrap == f"127.0.0.1:{kafka_broker.port}"
    assert kafka_broker.startup_seconds is not None


def test_create_topics_is_idempotent_and_supports_partitions(
    kafka_broker: EmbeddedBroker,
) -> None:
    three, one = unique("t3"), unique("t1")
    assert create_topics(kafka_broker.bootstrap, {three: 3, one: 1}) == {three: 3, one: 1}
    # Existing topics are left as they are (TopicAlreadyExists is ignored).
    extra = unique("t2")
    assert create_topics(kafka_broker.bootstrap, [three, extra], partitions=2) == {
        three: 3,
        extra: 2,
    }
    assert create_topics(kafka_broker.bootstrap, []) == {}


async def test_produce_and_consume_keyed_message(kafka_broker: EmbeddedBroker) -> None:
    topic = unique("invoices")
    create_topics(kafka_broker.bootstrap, {topic: 3})

    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        assert await producer.partitions_for(topic) == {0, 1, 2}
        first = await producer.send_and_wait(topic, key=b"invoice-42", value=b"issued")
        second = await producer.send_and_wait(topic, key=b"invoice-42", value=b"paid")
    finally:
        await producer.stop()
    # Same key, same partition, consecutive offsets.
    assert first.partition == second.partition
    assert second.offset == first.offset + 1

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        await consumer.seek_to_beginning()
        records = await consume(consumer, 2)
    finally:
        await consumer.stop()
    assert [(r.key, r.value, r.partition) for r in records] == [
        (b"invoice-42", b"issued", first.partition),
        (b"invoice-42", b"paid", first.partition),
    ]


async def test_consumer_group_consumes_and_commits(kafka_broker: EmbeddedBroker) -> None:
    topic, group = unique("dunning"), unique("group")
    create_topics(kafka_broker.bootstrap, {topic: 3})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, key=f"customer-{i}".encode(), value=b"x")
    finally:
        await producer.stop()

    # Tansu holds JoinGroup for max(1s, session_timeout/2): keep the session short.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        records = await consume(consumer, 6)
        assert sorted(r.key for r in records) == [f"customer-{i}".encode() for i in range(6)]
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    per_partition: dict[int, int] = {}
    for r in records:
        per_partition[r.partition] = per_partition.get(r.partition, 0) + 1
    assert {p: committed[p] for p in per_partition} == per_partition


async def test_produce_auto_creates_unknown_topic(kafka_broker: EmbeddedBroker) -> None:
    topic = unique("auto")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"k", value=b"v")
    finally:
        await producer.stop()
    # Tansu auto-creates on metadata requests (4 partitions in v0.6.0).
    partitions = create_topics(kafka_broker.bootstrap, [topic])[topic]
    assert partitions >= 1


async def test_restart_answers_again_on_same_port_and_forgets_topics(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    with EmbeddedBroker(free_port(), log_path=log_path) as broker:
        port, pid = broker.port, broker.pid
        topic = unique("ledger")
        create_topics(broker.bootstrap, {topic: 3})
        assert topic in await list_topics(broker.bootstrap)

        broker.restart()  # called from inside the event loop on purpose

        assert broker.is_running
        assert (broker.port, broker.bootstrap) == (port, f"127.0.0.1:{port}")
        assert broker.pid != pid
        # Memory storage: the restarted broker is empty.
        assert topic not in await list_topics(broker.bootstrap)
        assert create_topics(broker.bootstrap, {topic: 3}) == {topic: 3}
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, key=b"k", value=b"after-restart")
        finally:
            await producer.stop()
        assert meta.offset == 0
    assert not broker.is_running
    broker.stop()  # idempotent
    assert log_path.read_text().count("starting:") == 2


def test_start_refuses_busy_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        broker = EmbeddedBroker(port)
        with pytest.raises(BrokerError, match="already listening"):
            broker.start()
        assert not broker.is_running


def test_start_reports_early_exit_with_log_tail(tmp_path: Path) -> None:
    binary = fake_broker(tmp_path, "echo 'boom: cannot bind' >&2\nexit 3")
    broker = EmbeddedBroker(free_port(), binary=binary)
    with pytest.raises(BrokerError, match=r"(?s)exited with status 3.*boom: cannot bind"):
        broker.start(timeout=5)
    assert broker.pid is None


def test_start_deadline_kills_unresponsive_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = fake_broker(tmp_path, f"echo $$ > {pid_file}\necho 'hanging'\nexec sleep 60")
    broker = EmbeddedBroker(free_port(), binary=binary)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"(?s)not ready before deadline.*hanging"):
        broker.start(timeout=0.5)
    assert time.monotonic() - started < 5
    assert not broker.is_running
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


# -- databases ---------------------------------------------------------------


def test_fresh_postgres_database_roundtrip(postgres_url: str) -> None:
    with fresh_postgres_database(postgres_url) as url:
        name = make_url(url).database
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE invoice (id int PRIMARY KEY, amount numeric)"))
                conn.execute(text("INSERT INTO invoice VALUES (1, 120.50)"))
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT id, amount FROM invoice")).all()
            assert [(r.id, float(r.amount)) for r in rows] == [(1, 120.5)]
        finally:
            engine.dispose()
        # An open connection must not prevent the drop (WITH (FORCE)).
        lingering = psycopg.connect(url.replace("+psycopg", ""))
    lingering.close()
    with psycopg.connect(f"{postgres_url}/postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert exists is None


def test_database_url_is_empty_and_usable(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE ping (id integer PRIMARY KEY)"))
            conn.execute(text("INSERT INTO ping (id) VALUES (1), (2)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ping")).scalar_one() == 2
    finally:
        engine.dispose()
