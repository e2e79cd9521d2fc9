"""Helpers for driving the ledger service through the real embedded broker.

- message builders for the contract's inbound CloudEvents (``invoice_issued`` ...);
- :class:`Publisher`: an aiokafka producer that keys every message by its customer id;
- :class:`InProcessLedger` (uvicorn in the test's event loop) and :class:`LedgerProcess`
  (``python -m uvicorn`` as a child process that can be killed with SIGKILL);
- :func:`poll`: wait for a condition with a deadline (never sleep "long enough");
- direct reads of the event store (``stored_events`` on SQLite, ``ledger_events`` on
  PostgreSQL) and of the consumer positions it tracks;
- :func:`read_topic`: everything on a topic, from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, RecordMetadata
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.ledger.settings import LedgerSettings
from shared.broker import EmbeddedBroker, create_topics, free_port, start_on_free_port
from shared.settings import ServiceSettings

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]

SOURCE = "erp/it"
INBOUND_TOPICS = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers")
OUTBOUND_TOPIC = "ar.ledger.events"
DEADLETTER_TOPIC = "ar.deadletter"
# Tansu auto-creates unknown topics with 4 partitions (any client's metadata request may do
# it, e.g. right after a broker restart), so the tests use 4 everywhere: the partition a
# customer's key lands on stays the same whoever creates the topic.
PARTITIONS = 4
TOPICS = dict.fromkeys((*INBOUND_TOPICS, OUTBOUND_TOPIC, DEADLETTER_TOPIC), PARTITIONS)
SESSION_TIMEOUT_MS = 2000  # Tansu holds a group join for half of it

TOPIC_OF_TYPE = {
    "invoice": "ar.invoices",
    "credit_note": "ar.invoices",
    "prepayment": "ar.invoices",
    "payment": "ar.payments",
    "dispute": "ar.disputes",
    "customer": "ar.customers",
    "rating": "ar.ratings",
}


# --------------------------------------------------------------------------- waiting


async def poll(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until ``until(value)`` holds; fail with the last value at the deadline.

    Exceptions from the probe (a connection refused while a process starts) count as
    "not yet" and are reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            value = await probe()
            error = None
            if until(value):
                return value
        except (httpx.HTTPError, OSError) as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what}: not reached within {timeout:.0f}s; last value {value!r}"
                + (f", last error {error!r}" if error else "")
            )
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- messages


def cloud_event(
    event_type: str, data: dict[str, Any], *, event_id: str, source: str = SOURCE
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": "2024-06-30T12:00:00Z",
        "subject": data["customer_id"],
        "datacontenttype": "application/json",
        "data": data,
    }


def topic_of(event: dict[str, Any]) -> str:
    return TOPIC_OF_TYPE[event["type"].split(".")[0]]


def invoice_issued(
    customer: str, invoice: str, amount: str, *, currency: str = "EUR",
    issue: str = "2024-01-01", due: str = "2024-01-31", event_id: str | None = None,
) -> dict[str, Any]:
    return cloud_event("invoice.issued", {
        "invoice_id": invoice, "customer_id": customer, "issue_date": issue, "due_date": due,
        "currency": currency, "amount": amount,
    }, event_id=event_id or f"inv-{invoice}")


def payment_received(
    customer: str, payment: str, amount: str, *, currency: str = "EUR", received: str = "2024-01-15",
    allocations: Iterable[tuple[str, str]] = (), event_id: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "payment_id": payment, "customer_id": customer, "currency": currency, "amount": amount,
        "received_date": received,
    }
    allocations = list(allocations)
    if allocations:
        data["allocations"] = [{"invoice_id": i, "amount": a} for i, a in allocations]
    return cloud_event("payment.received", data, event_id=event_id or f"pay-{payment}")


def credit_note_issued(
    customer: str, credit_note: str, amount: str, *, currency: str = "EUR", issue: str = "2024-01-20",
    invoice: str | None = None, event_id: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "credit_note_id": credit_note, "customer_id": customer, "currency": currency,
        "amount": amount, "issue_date": issue,
    }
    if invoice is not None:
        data["invoice_id"] = invoice
    return cloud_event("credit_note.issued", data, event_id=event_id or f"cn-{credit_note}")


def dispute_opened(
    customer: str, dispute: str, invoice: str, amount: str, *, opened: str = "2024-02-01",
    reason: str = "damaged goods", event_id: str | None = None,
) -> dict[str, Any]:
    return cloud_event("dispute.opened", {
        "dispute_id": dispute, "invoice_id": invoice, "customer_id": customer, "amount": amount,
        "opened_date": opened, "reason": reason,
    }, event_id=event_id or f"dsp-{dispute}")


def customer_upserted(customer: str, name: str, *, event_id: str | None = None) -> dict[str, Any]:
    return cloud_event("customer.upserted", {"customer_id": customer, "name": name},
                       event_id=event_id or f"cust-{customer}-{name}")


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


# --------------------------------------------------------------------------- Kafka


def start_broker(log_path: Path | None = None, attempts: int = 3) -> EmbeddedBroker:
    """A private broker on a free port."""
    return start_on_free_port(log_path, attempts)


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """The partition the producer's default partitioner picks for ``key``: a message sent
    there without a key (or under another key) shares the order of the key's messages."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def create_ledger_topics(broker: EmbeddedBroker) -> None:
    created = create_topics(broker.bootstrap, TOPICS)
    assert all(count == PARTITIONS for count in created.values()), created


class Publisher:
    """A producer for tests: contract events keyed by customer id, raw bytes anywhere."""

    def __init__(self, bootstrap: str, *, max_request_size: int = 1_048_576) -> None:
        # max_request_size: raise it to publish originals larger than Kafka's default 1 MB
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024,
            max_request_size=max_request_size,
        )

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, event: dict[str, Any]) -> RecordMetadata:
        return await self.send_raw(topic_of(event), event["subject"].encode(), encode(event))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes,
                       partition: int | None = None) -> RecordMetadata:
        return await self.producer.send_and_wait(topic, value=value, key=key, partition=partition)

    async def send_all(self, events: Iterable[dict[str, Any]]) -> list[RecordMetadata]:
        """Publish many events pipelined (per-partition order kept), wait for every ack."""
        futures = [
            await self.producer.send(topic_of(e), value=encode(e), key=e["subject"].encode())
            for e in events
        ]
        return list(await asyncio.gather(*futures))


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool] = lambda records: True,
    timeout: float = 15.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` from the beginning, read until ``until(records)`` holds
    and every partition is read up to its high watermark.

    The end is taken from the high watermarks that fetch responses carry: the embedded
    broker's ListOffsets (``end_offsets()``) under-reports partitions written in
    multi-record batches.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # no public way to refresh
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} not found"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
            caught_up = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    caught_up = False
            if caught_up and until(records):
                return records
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{topic}: the expected records did not arrive within {timeout:.0f}s "
                    f"({len(records)} read)"
                )
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- the service


def ledger_env(bootstrap: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
    env.update({
        "RECEIVABLES_KAFKA_BOOTSTRAP": bootstrap,
        "RECEIVABLES_DATABASE_URL": database_url,
        "RECEIVABLES_AUTH": "disabled",
        "RECEIVABLES_DEV_MODE": "true",
        "RECEIVABLES_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        **extra,
    })
    return env


def ledger_settings(bootstrap: str, database_url: str, **overrides: Any) -> LedgerSettings:
    return LedgerSettings.for_service(
        "ledger", kafka_bootstrap=bootstrap, database_url=database_url, auth="disabled",
        dev_mode=True, session_timeout_ms=SESSION_TIMEOUT_MS, **overrides,
    )


class LedgerClient:
    """REST and metrics reads against a running ledger."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params or None)

    async def json(self, path: str, **params: Any) -> Any:
        response = await self.get(path, **params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    async def invoice(self, invoice_id: str) -> dict[str, Any] | None:
        response = await self.get(f"/invoices/{invoice_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def balances(self, customer_id: str, as_of: str = "2030-01-01") -> dict[str, dict[str, str]] | None:
        """``{currency: {open_amount, overdue_amount, disputed_amount, unapplied_cash}}``."""
        response = await self.get(f"/customers/{customer_id}/balance", as_of=as_of)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return {b["currency"]: {k: v for k, v in b.items() if k != "currency"}
                for b in response.json()["balances"]}

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples summed over their labels, by sample name."""
        response = await self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    async def wait_metric(self, name: str, at_least: float, *, timeout: float) -> dict[str, float]:
        return await poll(self.metrics, lambda m: m.get(name, 0.0) >= at_least,
                          timeout=timeout, what=f"{name} >= {at_least}")


def parse_metrics(exposition: str) -> dict[str, float]:
    """Each sample name summed over its labels, plus ``name{label=value,...}`` per sample."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if sample.labels:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                totals[f"{sample.name}{{{labels}}}"] = sample.value
    return totals


class InProcessApp(LedgerClient):
    """A service's ASGI app under uvicorn in the current event loop (``async with``)."""

    name = "service"

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", log_config=None,
            lifespan="on",
        ))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
                raise AssertionError(f"the {self.name} server stopped during startup")
            assert time.monotonic() < deadline, f"the {self.name} server did not start within 30s"
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, timeout=20)
            except TimeoutError:
                self.task.cancel()
                with contextlib.suppress(BaseException):
                    await self.task
        await self.close()


class InProcessLedger(InProcessApp):
    """The ledger app under uvicorn in the current event loop (``async with``)."""

    name = "ledger"

    def __init__(self, settings: ServiceSettings) -> None:
        from services.ledger.service import create_app

        super().__init__(create_app(settings))


class LedgerProcess(LedgerClient):
    """``python -m uvicorn --factory services.ledger.service:create_app`` as a child process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== starting ledger on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "services.ledger.service:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    async def wait_live(self, timeout: float = 30.0) -> None:
        async def probe() -> int:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"ledger exited with {self.proc.returncode}\n{self.log_tail()}")
            return (await self.get("/health/live")).status_code

        await poll(probe, lambda status: status == 200, timeout=timeout, what="ledger /health/live")

    def kill(self) -> list[int]:
        """SIGKILL: no shutdown hook runs, whatever was in flight is lost.

        Returns the pids of the service's child processes (its followers) at the time.
        """
        assert self.proc is not None
        children = child_pids(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return children

    def children(self) -> list[int]:
        assert self.proc is not None
        return child_pids(self.proc.pid)

    def terminate(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "--- ledger log ---\n" + "\n".join(tail)


def child_pids(pid: int) -> list[int]:
    """The running processes whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------- the event store


def _tables(database_url: str) -> tuple[str, str]:
    """(events table, tracking table) as the eventsourcing library names them."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return "stored_events", "tracking"
    return "ledger_events", "ledger_tracking"


def stored_events(database_url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored domain event as (class name, decoded state), in notification order."""
    events_table, _ = _tables(database_url)
    order = "rowid" if events_table == "stored_events" else "notification_id"
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT topic, state FROM {events_table} ORDER BY {order}")).all()
    finally:
        engine.dispose()
    return [(topic.rsplit(".", 1)[-1], orjson.loads(bytes(state))) for topic, state in rows]


def count_stored_events(database_url: str) -> int:
    events_table, _ = _tables(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {events_table}")).scalar_one())
    finally:
        engine.dispose()


def tracked_positions(database_url: str) -> dict[str, int]:
    """The last consumed offset per tracking name (``topic:partition[:epochN]``, ``outbox``)."""
    _, tracking_table = _tables(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                f"SELECT application_name, max(notification_id) FROM {tracking_table} "
                "GROUP BY application_name"
            )).all()
    finally:
        engine.dispose()
    return {name: int(position) for name, position in rows}


def max_notification_id(database_url: str) -> int:
    events_table, _ = _tables(database_url)
    column = "rowid" if events_table == "stored_events" else "notification_id"
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT max({column}) FROM {events_table}")).scalar() or 0)
    finally:
        engine.dispose()


def origin_keys(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(source, id) of the inbound message behind each event that has one."""
    return [(s["origin"]["source"], s["origin"]["id"]) for _, s in events if s.get("origin")]


def money(value: str | Decimal) -> str:
    return str(Decimal(value).quantize(Decimal("0.01")))


def balance_rows(database_url: str) -> dict[tuple[str, str], dict[str, Decimal]]:
    """The ``ledger_balances`` read model: current totals per (customer, currency)."""
    from sqlalchemy import select

    from services.ledger.read.projections import balances

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(balances)).mappings().all()
    finally:
        engine.dispose()
    return {
        (r["customer_id"], r["currency"]): {
            k: r[k] for k in ("open_amount", "disputed_amount", "unapplied_cash")
        }
        for r in rows
    }
