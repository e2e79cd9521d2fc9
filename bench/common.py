"""What the benchmarks that run services end to end share (``bench.ingest``, ``bench.stack``).

Publishing a book to a broker and reading its partitions' ends, fresh databases (PostgreSQL
or SQLite), the ledger's store and read models as seen from outside, the raw insert baseline
the figures are compared with, and CPU accounting from ``/proc``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import sqlite3
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.book import Book

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES_BASE = "postgresql://postgres@127.0.0.1:5432"
LEDGER_EVENTS_TOPIC = "ar.ledger.events"
DEADLETTER_TOPIC = "ar.deadletter"
RESERVED_PORTS = {9092, 8001, 8002, 8003}
RAW_BATCH = 1_000
RAW_PAYLOAD_BYTES = 300


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def project_all(app: Any, projector: Any, batch: int = 5_000) -> tuple[int, float]:
    """Every stored event through ``projector``, ``batch`` notifications per transaction (as a
    replay does): (events projected, seconds)."""
    started = time.perf_counter()
    position = projected = 0
    while notifications := app.recorder.select_notifications(position + 1, batch):
        projector.apply(notifications)
        position = notifications[-1].id
        projected += len(notifications)
        if projected % 500_000 < batch:
            log(f"build: projected {projected:,} events")
    return projected, time.perf_counter() - started


def free_port() -> int:
    from shared.broker import free_port as any_free_port

    while True:
        port = any_free_port()
        if port not in RESERVED_PORTS:
            return port


# ---------------------------------------------------------------------------- publishing


async def publish(book: Book, bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1_048_576,
        max_request_size=8_388_608, request_timeout_ms=60_000,
    )
    await producer.start()
    try:
        futures = []
        for message in book.messages:
            futures.append(await producer.send(message.topic, key=message.key, value=message.value))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def highwaters(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """End offset of every partition, from the high watermarks that fetch responses carry.

    (The embedded broker's ListOffsets under-reports the end of partitions written in
    multi-record batches, so ``end_offsets()`` alone is not trusted.)
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        listed = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(0, listed[tp] - 1))
        deadline = time.monotonic() + 30
        while any(consumer.highwater(tp) is None for tp in partitions if listed[tp]):
            if time.monotonic() > deadline:
                raise RuntimeError("no high watermark from the broker within 30 s")
            await consumer.getmany(timeout_ms=200, max_records=1)
        return {(tp.topic, tp.partition): consumer.highwater(tp) or 0 for tp in partitions}
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages held per topic."""
    totals: dict[str, int] = collections.Counter()
    for (topic, _), end in (await highwaters(bootstrap, topics)).items():
        totals[topic] += end
    return dict(totals)


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def deadletter_reasons(
    bootstrap: str, since: dict[tuple[str, int], int]
) -> collections.Counter[str]:
    """Reasons of the dead letters written after the offsets ``since``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = await highwaters(bootstrap, [DEADLETTER_TOPIC])
    reasons: collections.Counter[str] = collections.Counter()
    remaining = {TopicPartition(*key) for key, end in ends.items() if end > since.get(key, 0)}
    if not remaining:
        return reasons
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(sorted(remaining))
        for tp in remaining:
            consumer.seek(tp, since.get((tp.topic, tp.partition), 0))
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    reasons[_shorten(json.loads(record.value)["data"]["reason"])] += 1
                if records and records[-1].offset + 1 >= ends[tp.topic, tp.partition]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return reasons


def _shorten(reason: str) -> str:
    """Group dead-letter reasons: ids and amounts vary, the kind of refusal does not."""
    return " ".join("#" if any(ch.isdigit() for ch in word) else word for word in reason.split()[:8])


# ---------------------------------------------------------------------------- databases


@dataclass
class Database:
    kind: str  # "postgres" | "sqlite"
    url: str  # SQLAlchemy URL for the service
    name: str  # PostgreSQL database name, or SQLite file path

    def drop(self) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(self.name + suffix).unlink()


def fresh_database(kind: str, label: str, workdir: Path) -> Database:
    if kind == "postgres":
        import psycopg

        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return Database(kind, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name)
    path = workdir / f"{label}-{uuid.uuid4().hex[:8]}.sqlite"
    return Database(kind, f"sqlite:///{path}", str(path))


def max_notification_id(db: Database, app: str = "ledger") -> int:
    """The event store's last notification id (application ``app``'s events table; on SQLite
    the file's one ``stored_events`` table)."""
    if db.kind == "postgres":
        import psycopg

        with psycopg.connect(f"{POSTGRES_BASE}/{db.name}") as conn:
            row = conn.execute(f"SELECT MAX(notification_id) FROM {app}_events").fetchone()
    else:
        with contextlib.closing(sqlite3.connect(f"file:{db.name}?mode=ro", uri=True, timeout=30)) as conn:
            row = conn.execute("SELECT MAX(rowid) FROM stored_events").fetchone()
    return int(row[0] or 0) if row else 0


def mean_event_bytes(db: Database, app: str = "ledger") -> int:
    """The mean size of a stored event's state: what an "event-sized" raw row carries."""
    if db.kind == "postgres":
        import psycopg

        with psycopg.connect(f"{POSTGRES_BASE}/{db.name}") as conn:
            row = conn.execute(f"SELECT AVG(octet_length(state)) FROM {app}_events").fetchone()
    else:
        with contextlib.closing(sqlite3.connect(f"file:{db.name}?mode=ro", uri=True, timeout=30)) as conn:
            row = conn.execute("SELECT AVG(length(state)) FROM stored_events").fetchone()
    return round(row[0]) if row and row[0] else RAW_PAYLOAD_BYTES


CONSISTENCY = {
    # the same money three ways: per invoice, per customer balance, as a sum of movements
    "invoices_open": "SELECT COALESCE(SUM(open_amount), 0) FROM ledger_invoices WHERE status <> 'cancelled'",
    "balances_open": "SELECT COALESCE(SUM(open_amount), 0) FROM ledger_balances",
    "movements_open": "SELECT COALESCE(SUM(open_delta), 0) FROM ledger_movements",
    "balances_unapplied": "SELECT COALESCE(SUM(unapplied_cash), 0) FROM ledger_balances",
    "movements_unapplied": "SELECT COALESCE(SUM(unapplied_delta), 0) FROM ledger_movements",
}


def read_model_counts(db: Database) -> dict[str, int]:
    """Row counts of the read models, and the sums that must agree (see ``consistent``)."""
    tables = ("ledger_invoices", "ledger_movements", "ledger_balances", "ledger_disputes",
              "ledger_customers")
    queries = {table: f"SELECT count(*) FROM {table}" for table in tables} | CONSISTENCY
    counts = {}
    if db.kind == "postgres":
        import psycopg

        with psycopg.connect(f"{POSTGRES_BASE}/{db.name}") as conn:
            for name, query in queries.items():
                counts[name] = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    else:
        with contextlib.closing(sqlite3.connect(f"file:{db.name}?mode=ro", uri=True, timeout=30)) as conn:
            for name, query in queries.items():
                counts[name] = int(conn.execute(query).fetchone()[0])
    return counts


def consistent(counts: dict[str, int]) -> bool:
    return (counts["invoices_open"] == counts["balances_open"] == counts["movements_open"]
            and counts["balances_unapplied"] == counts["movements_unapplied"])


def _raw_rows(n: int, size: int) -> list[tuple[uuid.UUID, int, str, bytes]]:
    """Event-sized rows: an aggregate id, a version, a topic and a ``size``-byte JSON state."""
    rng = random.Random(11)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(max(1, n // 30))]
    rows = []
    for i in range(n):
        state = json.dumps({
            "originator_topic": "services.ledger.domain.account:CustomerAccount",
            "timestamp": "2026-01-01T00:00:00.000000+00:00", "seq": i,
            "origin": {"source": "erp/bench", "id": f"bench-{i:08d}", "type": "payment.received"},
            "credit": {"key": f"payment:PAY-{i:08d}", "amount": f"{rng.randrange(10**6) / 100:.2f}"},
        }).encode()
        state = (state + b" " * size)[:size]
        rows.append((ids[i % len(ids)], i, "services.ledger.domain.account:CustomerAccount.CreditReceived",
                     state))
    return rows


def raw_baseline(kind: str, n: int, workdir: Path, size: int = RAW_PAYLOAD_BYTES) -> dict[str, Any]:
    """Insert ``n`` rows of ``size`` bytes with executemany in batches of 1,000; rows per second."""
    rows = _raw_rows(n, size)
    db = fresh_database(kind, "raw", workdir)
    try:
        if kind == "postgres":
            import psycopg

            with psycopg.connect(f"{POSTGRES_BASE}/{db.name}") as conn:
                conn.execute(
                    "CREATE TABLE raw_events (originator_id uuid NOT NULL, originator_version bigint "
                    "NOT NULL, topic text, state bytea, notification_id bigserial, "
                    "PRIMARY KEY (originator_id, originator_version))"
                )
                conn.execute("CREATE UNIQUE INDEX raw_events_nid ON raw_events (notification_id)")
                conn.commit()
                started = time.perf_counter()
                with conn.cursor() as cursor:
                    for start in range(0, n, RAW_BATCH):
                        cursor.executemany(
                            "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
                            "VALUES (%s, %s, %s, %s)",
                            rows[start:start + RAW_BATCH],
                        )
                        conn.commit()
                elapsed = time.perf_counter() - started
        else:
            conn = sqlite3.connect(db.name, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")  # as the event store's recorder sets it
            conn.execute(
                "CREATE TABLE raw_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
                "state BLOB, PRIMARY KEY (originator_id, originator_version))"
            )
            text_rows = [(r[0].hex, r[1], r[2], r[3]) for r in rows]
            started = time.perf_counter()
            for start in range(0, n, RAW_BATCH):
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO raw_events VALUES (?, ?, ?, ?)",
                                 text_rows[start:start + RAW_BATCH])
                conn.execute("COMMIT")
            elapsed = time.perf_counter() - started
            conn.close()
    finally:
        db.drop()
    return {"rows": n, "seconds": elapsed, "rows_per_second": n / elapsed, "batch": RAW_BATCH,
            "row_bytes": size}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {metric name (labels summed): value}, plus labelled follower gauges."""
    values: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, labels = name_labels.partition("{")
        if name == "receivables_follower_position":
            follower = labels.split('follower="', 1)[1].split('"', 1)[0]
            values[f"follower:{follower}"] = float(value)
        else:
            values[name] += float(value)
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its running children (the service's followers process)."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += cpu_seconds(int(entry.name))
    return total


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds of every running postgres process (server and backends), by pid."""
    seconds = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip().startswith("postgres"):
                seconds[int(entry.name)] = cpu_seconds(int(entry.name))
    return seconds


def postgres_cpu_since(start: dict[int, float]) -> float:
    """PostgreSQL's CPU seconds since ``start``: backends that ended meanwhile (other
    clients of the server) are left out rather than counted negative."""
    return sum(now - start.get(pid, 0.0) for pid, now in postgres_cpu_seconds().items())


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def raw_postgres_events(database: str, table: str, ids: list[Any], upto: int,
                        chunk: int) -> tuple[int, float]:
    """A raw baseline: the stored events of these aggregates up to notification ``upto``, bytes
    not decoded, ``chunk`` aggregates a query, from PostgreSQL table ``table``: (rows, seconds)."""
    import psycopg

    rows = 0
    with psycopg.connect(f"{POSTGRES_BASE}/{database}") as conn:
        started = time.perf_counter()
        for start in range(0, len(ids), chunk):
            cursor = conn.cursor(binary=True)
            cursor.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {table} "
                "WHERE originator_id = ANY(%s) AND notification_id <= %s "
                "ORDER BY originator_id, originator_version", (ids[start:start + chunk], upto))
            rows += len(cursor.fetchall())
        return rows, time.perf_counter() - started
