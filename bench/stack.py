"""The whole stack, as ``receivables dev`` runs it: the synthetic book through the ledger,
``ar.ledger.events`` into dunning and credit, every read model caught up.

For each database asked for (SQLite, PostgreSQL) this

1. starts an embedded broker of its own, creates ``receivables dev``'s topics (4 partitions
   each) and publishes ``bench/book.py``'s book on them before any service runs, so what is
   measured is the services' consumption, not the producer;
2. starts the ledger, dunning and credit, each as its own process (``uvicorn --factory
   services.<name>.service:create_app``, as ``bench/ingest.py`` runs the ledger) with the
   settings ``receivables dev`` gives them (auth off in dev mode, 2 s Kafka sessions, the
   default consumer groups, batches and followers: the projector and the outbox relay in the
   service's child process) on fresh databases: one SQLite file per service as ``dev`` makes
   them (``credit`` with its read models in a file beside), or one PostgreSQL database per
   service;
3. polls each service's ``/metrics`` and stops the clock when all three have caught up:

   - the ledger: every published message processed, a duplicate or dead-lettered, and its
     projections at its event store's max notification id (``bench/ingest.py``'s "fully
     projected"); its outbox relay at that id too, which is when ``ar.ledger.events`` holds
     everything the ledger will publish: the ends of its partitions are read then;
   - dunning and credit: their consumer positions (``receivables_consumer_position``, the
     next offset, stored with each batch's transaction) at the end of every partition of
     ``ar.ledger.events`` and ``ar.customers``, and their projections at their own event
     store's max notification id;

4. reports the stack's rate (book messages / wall time from the first processed message to
   all caught up), when each service caught up, and each service's CPU (its process and
   its followers' child; for PostgreSQL also its database's backends), with how long their
   threads waited for a core (``/proc/<pid>/task/*/schedstat``);
5. measures ``bench/ingest.py``'s raw baseline in the same kind of database and prints the
   stack's rate as a share of it.

Why separate processes rather than ``receivables dev``'s one process: each service's CPU
can then be told apart (and profiled), and it is how the services are deployed. The
difference: ``dev`` runs the three services' consumers and HTTP servers in one event loop
(one GIL, the stock asyncio loop), where here each has its own process and uvloop (uvicorn's
default). The followers run in a child process per service either way.

Usage (from the repository root)::

    python -m bench.stack                                   # 10,000 customers, 300,000 messages, both DBs
    python -m bench.stack --customers 2000 --events 50000 --db sqlite
    python -m bench.stack --db sqlite --profile             # py-spy on each service's process tree

Results (JSON, service logs, py-spy raw profiles and their summaries) go to
``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.book import Book, describe, generate_book
from bench.common import (
    POSTGRES_BASE,
    RESULTS,
    ROOT,
    Database,
    consistent,
    cpu_seconds,
    deadletter_reasons,
    end_offsets,
    free_port,
    fresh_database,
    get,
    highwaters,
    log,
    max_notification_id,
    mean_event_bytes,
    postgres_cpu_seconds,
    publish,
    raw_baseline,
    read_model_counts,
)

SERVICES = ("ledger", "dunning", "credit")
LEDGER_INBOUND = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers")
FEED_TOPICS = ("ar.ledger.events", "ar.customers")  # what dunning and credit consume
PROJECTIONS = {"ledger": "ledger-projections", "dunning": "dunning-projections",
               "credit": "credit-projections"}


# ---------------------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """The running child processes of ``pid`` (a service's followers process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def run_delay_seconds(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a core (schedstat)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


@dataclass
class Usage:
    """CPU and run-queue seconds of one process (0 when it is gone)."""

    cpu: float = 0.0
    waited: float = 0.0

    @classmethod
    def of(cls, pid: int | None) -> Usage:
        return cls(cpu_seconds(pid), run_delay_seconds(pid)) if pid else cls()

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.waited - other.waited)


def postgres_backends(db_names: dict[str, str]) -> dict[int, str]:
    """PostgreSQL backend pid -> the service whose database it serves."""
    import psycopg

    owners = {name: service for service, name in db_names.items()}
    with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY(%s)",
                            (list(owners),)).fetchall()
    return {int(pid): owners[datname] for pid, datname in rows}


# ---------------------------------------------------------------------------- metrics


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def labelled_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name: value summed over labels} plus, per labelled series,
    {'name{a="x",b="y"}': value} with the labels in alphabetical order."""
    values: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        values[name] += float(value)
        if labels:
            pairs = ",".join(f'{k}="{v}"' for k, v in sorted(_LABEL.findall(labels)))
            values[f"{name}{{{pairs}}}"] = float(value)
    return values


def follower_position(values: dict[str, float], follower: str) -> int:
    return int(values.get(f'receivables_follower_position{{follower="{follower}"}}', 0))


def consumer_position(values: dict[str, float], topic: str, partition: int) -> int:
    return int(values.get(f'receivables_consumer_position{{partition="{partition}",topic="{topic}"}}', 0))


# ---------------------------------------------------------------------------- one run


@dataclass
class ServiceResult:
    name: str
    database: str = ""
    caught_up_seconds: float | None = None  # first processed message -> read models caught up
    consumed_seconds: float | None = None  # -> every message of its topics consumed
    outbox_seconds: float | None = None  # -> its outbox relay at its max notification id
    messages: int = 0  # messages on its topics it had to consume
    processed: int = 0
    duplicates: int = 0
    deadlettered: int = 0
    stored_events: int = 0  # its event store's max notification id
    batches: int = 0
    cpu_seconds: float = 0.0  # its whole process tree, first message -> stack caught up
    cpu_seconds_main: float = 0.0  # the service's process: HTTP, Kafka consumer, event store writes
    cpu_seconds_followers: float = 0.0  # its followers' child process: projections, outbox
    waited_seconds_main: float = 0.0  # runnable but waiting for a core (all threads)
    waited_seconds_followers: float = 0.0
    cpu_seconds_at_catch_up: float = 0.0  # its tree's CPU from the start to its own catch-up
    postgres_cpu_seconds: float | None = None  # the backends serving its database
    profile: dict[str, str] = field(default_factory=dict)


@dataclass
class StackResult:
    db: str
    messages: int
    seconds: float = 0.0  # first processed message -> all three caught up
    messages_per_second: float = 0.0
    ledger_events_published: int = 0  # messages the ledger published on ar.ledger.events
    services: dict[str, ServiceResult] = field(default_factory=dict)
    broker_cpu_seconds: float = 0.0
    postgres_other_cpu_seconds: float | None = None  # postgres processes serving no service's database
    mean_event_bytes: int = 0  # of the ledger's stored events (the raw baseline's row size)
    read_models: dict[str, int] = field(default_factory=dict)  # the ledger's
    deadletter_reasons: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # when the stack caught up
    completed: bool = False


class Stack:
    """The three service processes of one run, their databases and their profilers."""

    def __init__(self, kind: str, bootstrap: str, workdir: Path, label: str) -> None:
        self.kind = kind
        self.bootstrap = bootstrap
        self.label = label
        self.dbs: dict[str, Database] = {}
        for name in SERVICES:
            if kind == "sqlite":  # as `receivables dev` names them (credit.db -> credit.read-models.db)
                path = workdir / f"{label}-{name}.db"
                self.dbs[name] = Database(kind, f"sqlite:///{path}", str(path))
            else:
                self.dbs[name] = fresh_database(kind, name, workdir)
        self.ports = {name: free_port() for name in SERVICES}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.profilers: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Any] = []

    def url(self, name: str, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def start(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
        for name in SERVICES:
            env = {
                **base,
                # what `receivables dev` sets (services.cli._dev); everything else at its default
                "RECEIVABLES_KAFKA_BOOTSTRAP": self.bootstrap,
                "RECEIVABLES_DATABASE_URL": self.dbs[name].url,
                "RECEIVABLES_AUTH": "disabled",
                "RECEIVABLES_DEV_MODE": "true",
                "RECEIVABLES_SESSION_TIMEOUT_MS": "2000",
                "PYTHONUNBUFFERED": "1",
            }
            service_log = open(RESULTS / f"{self.label}-{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            self.logs.append(service_log)
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", f"services.{name}.service:create_app",
                 "--host", "127.0.0.1", "--port", str(self.ports[name]), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=service_log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        for name in SERVICES:
            while True:
                self.check_alive()
                with contextlib.suppress(OSError):
                    get(self.url(name), timeout=1)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start within 120 s")
                time.sleep(0.1)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see "
                                   f"{RESULTS / f'{self.label}-{name}.log'}")

    def followers_pid(self, name: str) -> int | None:
        found = children(self.processes[name].pid)
        return found[0] if found else None

    def usage(self) -> dict[str, tuple[Usage, Usage]]:
        """Per service: (its process, its followers' process)."""
        return {name: (Usage.of(process.pid), Usage.of(self.followers_pid(name)))
                for name, process in self.processes.items()}

    def profile(self, rate: int) -> dict[str, Path]:
        if shutil.which("py-spy") is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        paths = {}
        for name, process in self.processes.items():
            paths[name] = RESULTS / f"{self.label}-{name}.pyspy.txt"
            self.profilers[name] = subprocess.Popen(
                ["py-spy", "record", "--pid", str(process.pid), "--format", "raw", "--output",
                 str(paths[name]), "--rate", str(rate), "--threads", "--subprocesses", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=open(RESULTS / f"{self.label}-{name}-py-spy.log", "wb"),  # noqa: SIM115
            )
        return paths

    def stop_profilers(self) -> None:
        for profiler in self.profilers.values():
            profiler.send_signal(signal.SIGINT)
        for profiler in self.profilers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=120)
        self.profilers.clear()

    def stop(self, keep: bool) -> None:
        self.stop_profilers()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for service_log in self.logs:
            service_log.close()
        for db in self.dbs.values():
            if keep:
                log(f"{self.kind}: kept the database {db.url}")
                continue
            db.drop()
            if db.kind == "sqlite":  # credit's read models, beside its event store
                path = Path(db.name)
                Database(db.kind, "", str(path.with_name(f"{path.stem}.read-models{path.suffix}"))).drop()


def run_stack(kind: str, book: Book, args: argparse.Namespace, workdir: Path, stamp: str) -> StackResult:
    """One run on ``kind``: a broker of its own with the book on it, the three services."""
    from services.cli import TOPICS
    from shared.broker import EmbeddedBroker, create_topics

    label = f"{stamp}-stack-{kind}"
    published = len(book.messages)
    result = StackResult(db=kind, messages=published,
                         services={name: ServiceResult(name) for name in SERVICES})
    with EmbeddedBroker(free_port(), log_path=RESULTS / f"{label}-broker.log") as broker:
        create_topics(broker.bootstrap, TOPICS)
        started = time.perf_counter()
        asyncio.run(publish(book, broker.bootstrap))
        elapsed = time.perf_counter() - started
        ends = asyncio.run(end_offsets(broker.bootstrap, list(LEDGER_INBOUND)))
        if sum(ends.values()) != published:
            raise RuntimeError(f"published {published} messages but the broker holds {ends}")
        log(f"{kind}: published {published} messages to {broker.bootstrap} in {elapsed:.1f}s "
            f"({published / elapsed:.0f}/s)")
        customer_ends = asyncio.run(highwaters(broker.bootstrap, ["ar.customers"]))
        stack = Stack(kind, broker.bootstrap, workdir, label)
        try:
            for name, db in stack.dbs.items():
                result.services[name].database = db.url
            log(f"{kind}: starting ledger, dunning, credit on ports {stack.ports}")
            stack.start()
            profiles = stack.profile(args.profile_rate) if args.profile else {}
            profile_started = time.monotonic()
            result.services["ledger"].messages = published
            _follow(stack, result, book, customer_ends, args, broker.pid)
            profile_wall = time.monotonic() - profile_started
            stack.stop_profilers()
            if result.completed:
                _wait_for_outboxes(stack, result, args)
                ledger_db = stack.dbs["ledger"]
                result.read_models = read_model_counts(ledger_db)
                result.mean_event_bytes = mean_event_bytes(ledger_db)
                reasons = asyncio.run(deadletter_reasons(broker.bootstrap, {}))
                result.deadletter_reasons = dict(reasons.most_common(10))
            for name, path in profiles.items():
                if path.exists() and path.stat().st_size:
                    summary = RESULTS / f"{label}-{name}-profile.txt"
                    summary.write_text(summarize_raw(path, name, profile_wall, top=args.top))
                    result.services[name].profile = {"raw": str(path.relative_to(ROOT)),
                                                     "summary": str(summary.relative_to(ROOT))}
        finally:
            stack.stop(args.keep)
    return result


def _follow(stack: Stack, result: StackResult, book: Book,
            customer_ends: dict[tuple[str, int], int], args: argparse.Namespace,
            broker_pid: int | None) -> None:
    """Poll the services until all three have caught up (or the timeout)."""
    published = len(book.messages)
    services = result.services
    started_at: float | None = None
    usage_start: dict[str, tuple[Usage, Usage]] = {}
    broker_start = 0.0
    pg_start: dict[int, float] = {}
    pg_owners: dict[int, str] = {}
    db_names = {name: db.name for name, db in stack.dbs.items()}
    max_nid: dict[str, int] = {}
    feed_ends: dict[tuple[str, int], int] | None = None  # ar.ledger.events + ar.customers, once final
    last_owners_poll = 0.0
    timeout_at = time.monotonic() + args.timeout
    while True:
        stack.check_alive()
        now = time.monotonic()
        values = {name: labelled_metrics(get(stack.url(name))) for name in SERVICES}
        done = {name: int(v["receivables_messages_processed_total"]
                          + v["receivables_messages_duplicate_total"]
                          + v["receivables_messages_deadlettered_total"]) for name, v in values.items()}
        if started_at is None and any(done.values()):
            # the first batch(es) already took this long before the poll saw them
            started_at = now - max(v.get("receivables_batch_seconds_sum", 0.0) for v in values.values())
            usage_start = stack.usage()
            broker_start = cpu_seconds(broker_pid) if broker_pid else 0.0
            if stack.kind == "postgres":
                pg_start = postgres_cpu_seconds()
                pg_owners = postgres_backends(db_names)
            log(f"{stack.kind}: consumption started")
        if started_at is None:
            if now > timeout_at:
                raise RuntimeError("no service processed a message before the timeout")
            time.sleep(args.poll)
            continue
        elapsed = now - started_at
        if stack.kind == "postgres" and now - last_owners_poll > 2:
            pg_owners |= postgres_backends(db_names)
            last_owners_poll = now
        result.timeline.append((round(elapsed, 2), {
            **{f"{n}:done": done[n] for n in SERVICES},
            **{f"{n}:projected": follower_position(values[n], PROJECTIONS[n]) for n in SERVICES},
            "ledger:outbox": follower_position(values["ledger"], "outbox"),
        }))
        # the ledger
        ledger = services["ledger"]
        if ledger.consumed_seconds is None and done["ledger"] >= published:
            ledger.consumed_seconds = elapsed
            max_nid["ledger"] = max_notification_id(stack.dbs["ledger"], "ledger")
            log(f"{stack.kind}: ledger consumed all {published} messages in {elapsed:.1f}s")
        if "ledger" in max_nid:
            if (ledger.caught_up_seconds is None
                    and follower_position(values["ledger"], PROJECTIONS["ledger"]) >= max_nid["ledger"]):
                _caught_up(stack, result, "ledger", elapsed, usage_start, values["ledger"], max_nid["ledger"])
            outbox = follower_position(values["ledger"], "outbox")
            if ledger.outbox_seconds is None and outbox >= max_nid["ledger"]:
                ledger.outbox_seconds = elapsed
                # everything the ledger publishes is on ar.ledger.events now (acknowledged)
                feed_ends = asyncio.run(highwaters(stack.bootstrap, ["ar.ledger.events"])) | customer_ends
                result.ledger_events_published = sum(
                    end for (topic, _), end in feed_ends.items() if topic == "ar.ledger.events")
                log(f"{stack.kind}: ledger outbox caught up at {elapsed:.1f}s: "
                    f"{result.ledger_events_published} messages on ar.ledger.events")
        # dunning and credit
        if feed_ends is not None:
            for name in ("dunning", "credit"):
                service = services[name]
                if service.consumed_seconds is None and all(
                        consumer_position(values[name], topic, partition) >= end
                        for (topic, partition), end in feed_ends.items()):
                    service.consumed_seconds = elapsed
                    service.messages = sum(feed_ends.values())
                    max_nid[name] = max_notification_id(stack.dbs[name], name)
                if (name in max_nid and service.caught_up_seconds is None
                        and follower_position(values[name], PROJECTIONS[name]) >= max_nid[name]):
                    _caught_up(stack, result, name, elapsed, usage_start, values[name], max_nid[name])
                if (name in max_nid and service.outbox_seconds is None
                        and follower_position(values[name], "outbox") >= max_nid[name]):
                    service.outbox_seconds = elapsed
        if all(s.caught_up_seconds is not None for s in services.values()):
            result.seconds = elapsed
            result.messages_per_second = published / elapsed
            result.load_average = os.getloadavg()
            usage_end = stack.usage()
            for name, service in services.items():
                main = usage_end[name][0] - usage_start[name][0]
                followers = usage_end[name][1] - usage_start[name][1]
                service.cpu_seconds_main, service.cpu_seconds_followers = main.cpu, followers.cpu
                service.waited_seconds_main, service.waited_seconds_followers = main.waited, followers.waited
                service.cpu_seconds = main.cpu + followers.cpu
            if broker_pid:
                result.broker_cpu_seconds = cpu_seconds(broker_pid) - broker_start
            if stack.kind == "postgres":
                by_service: dict[str, float] = collections.defaultdict(float)
                for pid, seconds in postgres_cpu_seconds().items():
                    by_service[pg_owners.get(pid, "")] += seconds - pg_start.get(pid, 0.0)
                for name, service in services.items():
                    service.postgres_cpu_seconds = by_service.get(name, 0.0)
                result.postgres_other_cpu_seconds = by_service.get("", 0.0)
            result.completed = True
            log(f"{stack.kind}: all three caught up in {elapsed:.1f}s "
                f"({result.messages_per_second:.0f} book messages/s)")
            return
        if now > timeout_at:
            log(f"{stack.kind}: TIMEOUT after {args.timeout}s: "
                + ", ".join(f"{n} done {done[n]}, projected {follower_position(values[n], PROJECTIONS[n])}"
                            for n in SERVICES))
            return
        time.sleep(args.poll)


def _caught_up(stack: Stack, result: StackResult, name: str, elapsed: float,
               usage_start: dict[str, tuple[Usage, Usage]], values: dict[str, float], max_nid: int) -> None:
    service = result.services[name]
    service.caught_up_seconds = elapsed
    service.stored_events = max_nid
    service.processed = int(values["receivables_messages_processed_total"])
    service.duplicates = int(values["receivables_messages_duplicate_total"])
    service.deadlettered = int(values["receivables_messages_deadlettered_total"])
    service.batches = int(values.get("receivables_batch_size_count", 0))
    now = stack.usage()[name]
    service.cpu_seconds_at_catch_up = sum(
        (now[i] - usage_start[name][i]).cpu for i in (0, 1))
    log(f"{stack.kind}: {name} caught up at {elapsed:.1f}s ({max_nid} events projected)")


def _wait_for_outboxes(stack: Stack, result: StackResult, args: argparse.Namespace) -> None:
    """After the clock: when each outbox relay reached its store's end (not part of the figure)."""
    deadline = time.monotonic() + 300
    started = time.monotonic() - result.seconds
    while time.monotonic() < deadline:
        pending = [s for s in result.services.values() if s.outbox_seconds is None]
        if not pending:
            return
        for service in pending:
            values = labelled_metrics(get(stack.url(service.name)))
            if follower_position(values, "outbox") >= service.stored_events:
                service.outbox_seconds = time.monotonic() - started
        time.sleep(args.poll)


# ---------------------------------------------------------------------------- profile

# Where a sample's time goes, by the outermost recognised frame (as bench.ingest does): a
# stage's time includes what it calls (decoding in the consumer, SQL in a commit).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("imports (a process starting: the followers' child)", ("_find_and_load",)),
    ("consumer: decode + validate (orjson + pydantic)", ("decode_record",)),
    ("consumer: prepare (domain: load + observe/apply)",
     ("LedgerApplication.prepare", "FeedApplication.prepare")),
    ("consumer: commit (event store: transcode + insert)",
     ("LedgerApplication.commit", "FeedApplication.commit")),
    ("consumer: dead letters", ("KafkaConsumerLoop.dead_letter",)),
    ("consumer: positions", ("Positions.load", "TrackedApplication.position")),
    ("followers: read notification log", ("SharedLog.read", "select_notifications")),
    ("projections: read models", ("Projector.",)),
    ("outbox: translate + produce", ("OutboxRelay.",)),
    ("outbox: record position", ("TrackedApplication.record_position",)),
    ("kafka client (aiokafka fetch/produce)", ("aiokafka/",)),
    ("http /metrics", ("starlette/", "fastapi/", "prometheus_client/", "uvicorn/protocols/")),
]
LOOP_ROOTS = ("Runner.run", "asyncio_run", "Server.run", "Server.serve", "run", "main", "<module>",
              "_run_module_as_main", "_run_code")
# Frames under which everything runs (left out of the inclusive tops)
ROOT_FRAMES = ("Thread.", "_worker (", "Handle._run", "BaseEventLoop.", "Context.run", "Task.",
               "ThreadPoolExecutor", "_WorkItem.run", "to_thread (", "Command.", "Context.invoke",
               "ServiceRuntime._spawn", "KafkaConsumerLoop.run (", "KafkaConsumerLoop._consume (",
               "FollowerLoop.run (", "_child (", "run.<locals>.wrapper")
# Functions whose inclusive share is worth knowing wherever they run (substring of
# "qualname (file)"; several patterns add up without counting a sample twice).
KEY_FUNCTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("ledger feed decode (shared/ledger_feed.py decode: orjson + pydantic)",
     ("decode (shared/ledger_feed.py",)),
    ("  of which pydantic model_validate", ("model_validate (",)),
    ("ledger inbound decode (shared/erp_events.py)", ("decode_message (shared/erp_events.py",)),
    ("aggregate observe (services/*/domain/account.py)", ("observe (services/dunning/domain/account.py",
                                                          "observe (services/credit/domain/account.py")),
    ("  of which event trigger/apply (eventsourcing domain)", ("trigger_event (", "Event.mutate (",)),
    ("accounts loaded from the store (repository.get, stored_ids)", ("Repository.get (", "stored_ids (")),
    ("event store save (save_tracked/save_collected)", ("save_tracked (", "save_collected (",
                                                       "LedgerApplication.commit (")),
    ("  transcoding out (mapper.to_stored_event)", ("to_stored_event (",)),
    ("  insert (TrackedApplication._record, sqlite3/psycopg)", ("TrackedApplication._record (",
                                                                "PostgresProcessRecorder._insert_events (",
                                                                "insert_events (")),
    ("projector: events decoded (mapper.to_domain_event)", ("to_domain_event (",)),
    ("projector: rows written (SQLAlchemy)", ("sqlalchemy/",)),
    ("notification log read (select_notifications)", ("select_notifications (",)),
    ("outbox relay (OutboxRelay.*)", ("OutboxRelay.",)),
    ("aiokafka (any)", ("aiokafka/",)),
    ("garbage collection (<gc>)", ("<gc>",)),
]

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize_raw(path: Path, service: str, wall_seconds: float, top: int = 10) -> str:
    """A py-spy ``--format raw`` profile of one service's process tree, per process: threads,
    stages, key functions (inclusive), top functions by own and inclusive time."""
    # process role -> counters
    total: collections.Counter[str] = collections.Counter()
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    stages: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    keys: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack_text.split(";")
        role, thread = "?", "?"
        python: list[tuple[str, str]] = []  # (qualname, short file), outermost first
        for frame in frames:
            if frame.startswith("process "):
                role = "followers (shared.worker)" if "shared.worker" in frame else "service"
            elif frame.startswith("thread ("):
                thread = frame.partition(": ")[2] or frame
                if thread.startswith(("asyncio_", "uvloop_", "ThreadPoolExecutor")):
                    thread = "worker threads (asyncio.to_thread)"
            else:
                match = _FRAME.match(frame)
                python.append((match["name"], _short_file(match["file"])) if match else (frame, ""))
        if not python:
            continue
        total[role] += count
        threads[role][thread] += count
        labels = [f"{name} ({file})" for name, file in python]
        stage = "other (event loop, threads)"
        if python[-1][0] in LOOP_ROOTS:
            stage = "event loop itself (poll, socket I/O, callbacks)"
        else:
            for (name, file) in python:
                found = next((s for s, markers in STAGES
                              if any(m in name or (m.endswith("/") and m in file) for m in markers)), None)
                if found:
                    stage = found
                    break
        stages[role][stage] += count
        unique = set(labels)
        if stage.startswith("imports"):
            unique = set()  # a module's import runs its code: not the work it is measured for
        for key, patterns in KEY_FUNCTIONS:
            if any(p in label for p in patterns for label in unique):
                keys[role][key] += count
        own[role][labels[-1]] += count
        for label in unique:
            inclusive[role][label] += count
    grand = sum(total.values())
    lines = [f"py-spy profile of {service} ({path.name}): {grand} samples of running threads over "
             f"{wall_seconds:.1f} s of wall time, both processes (a thread waiting for the GIL may "
             "count as running)"]
    for role in sorted(total, key=lambda r: -total[r]):
        n = total[role]
        lines += ["", f"== {service}: {role}: {n} samples ({n / grand:.0%} of the tree's)", "threads:"]
        lines += [f"  {c / n:6.1%}  {name}" for name, c in threads[role].most_common(8)]
        steady = n - sum(c for name, c in stages[role].items() if name.startswith("imports")) or 1
        lines.append("stages (outermost recognised frame; share of all samples, and of those outside "
                     "imports):")
        lines += [f"  {c / n:6.1%} {'' if name.startswith('imports') else f'{c / steady:6.1%}':>6}  {name}"
                  for name, c in stages[role].most_common()]
        lines.append("key functions (inclusive, anywhere on the stack):")
        lines += [f"  {keys[role][key] / n:6.1%}  {key}" for key, _ in KEY_FUNCTIONS if keys[role][key]]
        lines.append(f"top {top} by own time:")
        lines += [f"  {c / n:6.1%}  {label}" for label, c in own[role].most_common(top)]
        lines.append(f"top {top} by inclusive time (below the event loop and thread roots):")
        roots = [(label, c) for label, c in inclusive[role].most_common()
                 if label.split(" (", 1)[0] not in LOOP_ROOTS and not label.startswith(ROOT_FRAMES)]
        lines += [f"  {c / n:6.1%}  {label}" for label, c in roots[:top]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report


def report(runs: dict[str, StackResult], baselines: dict[str, dict[str, Any]], goal: float) -> str:
    lines = []
    header = (f"{'database':<9} {'messages':>9} {'seconds':>8} {'msg/s':>7} {'raw rows/s':>10} {'ratio':>6} "
              f"{'goal':>5} {'ledger':>7} {'dunning':>8} {'credit':>7} {'load avg':>15}")
    lines += [header, "-" * len(header)]
    for kind, run in runs.items():
        if not run.completed:
            lines.append(f"{kind:<9} did not complete")
            continue
        raw = baselines.get(kind, {}).get("rows_per_second", 0.0)
        ratio = run.messages_per_second / raw if raw else 0.0
        at = {n: s.caught_up_seconds or 0.0 for n, s in run.services.items()}
        lines.append(
            f"{kind:<9} {run.messages:>9} {run.seconds:>8.1f} {run.messages_per_second:>7.0f} "
            f"{(f'{raw:.0f}' if raw else '-'):>10} {(f'{ratio:.1%}' if raw else '-'):>6} "
            f"{('yes' if ratio >= goal else 'NO') if raw else '-':>5} {at['ledger']:>6.1f}s "
            f"{at['dunning']:>7.1f}s {at['credit']:>6.1f}s "
            f"{' '.join(f'{x:.2f}' for x in run.load_average):>15}")
    lines += ["", f"goal: the whole stack >= {goal:.0%} of the raw baseline (bench.ingest's: executemany, "
              "batches of 1,000, rows the mean size of the ledger's stored events)",
              "seconds: first processed message -> all three services' read models caught up; "
              "ledger/dunning/credit: when each caught up; load avg: when the stack caught up", ""]
    header = (f"{'database':<9} {'service':<8} {'messages':>9} {'events':>8} {'consumed':>9} "
              f"{'caught up':>9} {'outbox':>7} {'cpu s':>6} {'svc':>6} {'follow':>6} {'waited':>7} "
              f"{'pg cpu':>6} {'cores':>5} {'DL':>4} {'dup':>5} {'batch':>5}")
    lines += [header, "-" * len(header)]
    for kind, run in runs.items():
        for name, s in run.services.items():
            if s.caught_up_seconds is None:
                lines.append(f"{kind:<9} {name:<8} did not catch up")
                continue
            pg = f"{s.postgres_cpu_seconds:.1f}" if s.postgres_cpu_seconds is not None else "-"
            consumed = s.processed + s.duplicates + s.deadlettered
            lines.append(
                f"{kind:<9} {name:<8} {consumed:>9} {s.stored_events:>8} {s.consumed_seconds or 0:>8.1f}s "
                f"{s.caught_up_seconds:>8.1f}s "
                f"{(f'{s.outbox_seconds:.1f}s' if s.outbox_seconds else '-'):>7} "
                f"{s.cpu_seconds:>6.1f} {s.cpu_seconds_main:>6.1f} {s.cpu_seconds_followers:>6.1f} "
                f"{s.waited_seconds_main + s.waited_seconds_followers:>7.1f} {pg:>6} "
                f"{s.cpu_seconds / max(run.seconds, 1e-9):>5.2f} {s.deadlettered:>4} {s.duplicates:>5} "
                f"{consumed / max(s.batches, 1):>5.0f}")
        other = (f", other postgres processes {run.postgres_other_cpu_seconds:.1f} s"
                 if run.postgres_other_cpu_seconds is not None else "")
        total = sum(s.cpu_seconds + (s.postgres_cpu_seconds or 0) for s in run.services.values())
        lines.append(f"{kind:<9} broker {run.broker_cpu_seconds:.1f} CPU s{other}; services (+ their "
                     f"backends) {total:.1f} CPU s over {run.seconds:.1f} s = "
                     f"{total / max(run.seconds, 1e-9):.2f} cores of {os.cpu_count()}")
    lines += ["", "messages: consumed (processed + duplicates + dead-lettered); events: stored in its event "
              "store; consumed/caught up/outbox: seconds from the stack's first processed message;",
              "cpu s: the service's process tree (svc: the service's process, follow: its followers' child) "
              "from the stack's first message to all caught up; waited: seconds its threads (summed) were",
              "runnable but waiting for a core; pg cpu: the backends of its database; cores: cpu s / the "
              "stack's seconds; batch: messages per consumer transaction"]
    for kind, run in runs.items():
        if run.read_models:
            state = "agree" if consistent(run.read_models) else "DISAGREE"
            lines.append(f"{kind}: ledger read models {run.read_models['ledger_invoices']} invoices; open "
                         f"amounts and unapplied cash three ways {state}; {run.ledger_events_published} "
                         f"messages on ar.ledger.events")
        if run.deadletter_reasons:
            reasons = "; ".join(f"{count} x {reason}" for reason, count in run.deadletter_reasons.items())
            lines.append(f"{kind} dead letters (all services): {reasons}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300_000, help="messages published (all types)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each service's process tree (raw profiles, summaries: bench/results/)")
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second (each of 3)")
    parser.add_argument("--top", type=int, default=10, help="rows per table in the profile summaries")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw insert baseline")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between /metrics polls")
    parser.add_argument("--keep", action="store_true", help="keep the services' databases")
    parser.add_argument("--goal", type=float, default=0.10, help="share of the raw baseline to meet")
    args = parser.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / "data"
    workdir.mkdir(exist_ok=True)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    started = time.perf_counter()
    book = generate_book(args.customers, args.events, seed=args.seed)
    log(f"book generated in {time.perf_counter() - started:.1f}s: {describe(book)}")

    runs: dict[str, StackResult] = {}
    baselines: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        runs[kind] = run = run_stack(kind, book, args, workdir, stamp)
        if not args.no_baseline and run.completed:
            log(f"{kind}: raw baseline, {len(book.messages)} rows of {run.mean_event_bytes} bytes")
            baselines[kind] = raw_baseline(kind, len(book.messages), workdir, run.mean_event_bytes)
            log(f"{kind}: raw baseline {baselines[kind]['rows_per_second']:.0f} rows/s "
                f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")

    print()
    print(f"book: {describe(book)}")
    print(f"machine: {os.cpu_count()} CPUs; {sys.version.split()[0]}")
    print()
    print(report(runs, baselines, args.goal))
    for run in runs.values():
        for service in run.services.values():
            if service.profile:
                print(f"{run.db} {service.name} profile: {', '.join(service.profile.values())}")
    out = RESULTS / f"{stamp}-stack.json"
    out.write_text(json.dumps({
        "args": vars(args), "book": {"messages": len(book.messages), "customers": book.customers,
                                     "counts": dict(book.counts), "per_topic": dict(book.per_topic)},
        "baselines": baselines, "runs": {k: asdict(v) for k, v in runs.items()},
    }, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if all(r.completed for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
