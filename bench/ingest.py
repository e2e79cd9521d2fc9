"""Ledger ingest benchmark: a synthetic book through Kafka into the ledger, end to end.

For each database asked for (PostgreSQL, SQLite) this

1. starts the ledger service as its own process (uvicorn, as in production) on a fresh
   database, against an embedded broker on which the whole book was published beforehand,
   so what is measured is the ledger's consumption, not the producer;
2. polls ``/metrics`` and reports the sustained ingest rate, from the first processed message
   to "fully projected": every published message processed, duplicated or dead-lettered,
   and the projections' position equal to the event store's max notification id;
3. measures a raw baseline in the same kind of database: the same number of event-sized
   rows (a ``stored_events``-shaped table, payloads the mean size of the events the run
   stored) inserted with ``executemany`` in batches of 1,000, one transaction per batch.

With ``--advance SHARE`` it generates a second book of the same customers, size and seed in
which that share of the messages is advance-receipt traffic (prepayment requests and their
cancellations, tagged payments, refunds: ``bench/book.py``), publishes it on a broker of its
own, and runs the ledger on each book back to back on each database: it reports both rates,
their ratio (goal: within 5%), and whether each run dead-lettered only the book's
intentionally invalid messages (``--advance-first`` runs the advance book first, to see a bias
of the order; ``--rounds N`` runs both N times, alternating which goes first, and judges the
median ratio: one pair's ratio moves by several points from run to run).

Usage (from the repository root)::

    python -m bench.ingest                                  # 10,000 customers, 300,000 events, both DBs
    python -m bench.ingest --customers 2000 --events 50000 --db sqlite
    python -m bench.ingest --db postgres --profile          # py-spy on the service process
    python -m bench.ingest --customers 2000 --events 50000 --db sqlite --advance 0.05

Results (JSON, service logs, profiles) go to ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.book import INBOUND_TOPICS, Book, advance_messages, describe, generate_book
from bench.common import (
    DEADLETTER_TOPIC,
    LEDGER_EVENTS_TOPIC,
    RAW_BATCH,
    RAW_PAYLOAD_BYTES,
    RESULTS,
    ROOT,
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
    parse_metrics,
    postgres_cpu_seconds,
    postgres_cpu_since,
    publish,
    raw_baseline,
    read_model_counts,
    tree_cpu_seconds,
)


def replica_metrics(urls: list[str]) -> dict[str, float]:
    """Counters summed over the replicas; follower positions from the leading one (the max)."""
    total: dict[str, float] = collections.defaultdict(float)
    for url in urls:
        for name, value in parse_metrics(get(url)).items():
            if name.startswith("follower:"):
                total[name] = max(total[name], value)
            else:
                total[name] += value
    return total


@dataclass
class RunResult:
    db: str
    messages: int
    seconds: float = 0.0  # first processed message -> fully projected
    consumed_seconds: float = 0.0  # first processed message -> every message processed
    outbox_seconds: float | None = None  # first processed message -> outbox caught up
    processed: int = 0
    duplicates: int = 0
    deadlettered: int = 0
    stored_events: int = 0
    messages_per_second: float = 0.0
    events_per_second: float = 0.0
    service_cpu_cores: float = 0.0
    postgres_cpu_cores: float | None = None
    broker_cpu_cores: float = 0.0
    batch_max_records: int = 0
    batches: int = 0  # consumer batches (one transaction each)
    deadletter_reasons: dict[str, int] = field(default_factory=dict)
    read_models: dict[str, int] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    mean_event_bytes: int = RAW_PAYLOAD_BYTES  # of the stored events' state
    replicas: int = 1
    completed: bool = False
    book: str = ""  # "" the plain book; else the advance book's tag
    invalid_messages: int = 0  # the book's intentionally invalid messages: the dead letters expected
    advance_messages: int = 0  # the book's advance-receipt messages


def run_ledger(
    kind: str, book: Book, bootstrap: str, broker_pid: int | None, args: argparse.Namespace,
    workdir: Path, stamp: str, replicas: int = 1, tag: str = "",
) -> RunResult:
    """Start ``replicas`` ledger processes in one consumer group on a fresh database."""
    published = len(book.messages)
    db = fresh_database(kind, "ledger", workdir)
    ports = [free_port() for _ in range(replicas)]
    label = f"{stamp}-{kind}" + (f"-x{replicas}" if replicas > 1 else "") + (f"-{tag}" if tag else "")
    env = {
        **os.environ,
        "RECEIVABLES_KAFKA_BOOTSTRAP": bootstrap,
        "RECEIVABLES_DATABASE_URL": db.url,
        "RECEIVABLES_AUTH": "disabled",
        "RECEIVABLES_DEV_MODE": "true",
        "RECEIVABLES_SESSION_TIMEOUT_MS": "2000",
        "RECEIVABLES_BATCH_MAX_RECORDS": str(args.batch_max_records),
        "RECEIVABLES_CONSUMER_GROUP": f"bench-{label}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RECEIVABLES_LEDGER_DATABASE_URL", None)
    service_log = open(RESULTS / f"{label}-service.log", "wb")  # noqa: SIM115 - closed below
    deadletter_since = asyncio.run(highwaters(bootstrap, [DEADLETTER_TOPIC]))
    result = RunResult(db=kind, messages=published, batch_max_records=args.batch_max_records,
                       replicas=replicas, book=tag, invalid_messages=book.counts["invalid"],
                       advance_messages=advance_messages(book))
    log(f"{kind}: starting {replicas} ledger process(es) on port(s) {ports} against {db.url}")
    services = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "services.ledger.service:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=service_log, stderr=subprocess.STDOUT,
        )
        for port in ports
    ]
    service = services[0]
    profiler: subprocess.Popen[bytes] | None = None
    profile_started = profile_wall = 0.0
    try:
        metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        deadline = time.monotonic() + 120
        for url in metrics_urls:
            while True:
                if any(s.poll() is not None for s in services):
                    raise RuntimeError(f"a ledger process exited; see {service_log.name}")
                with contextlib.suppress(OSError):
                    get(url, timeout=1)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the ledger did not start within 120 s")
                time.sleep(0.1)
        if args.profile:
            profile_path = RESULTS / f"{label}.speedscope.json"
            profiler = subprocess.Popen(
                ["py-spy", "record", "--pid", str(service.pid), "--format", "speedscope",
                 "--output", str(profile_path), "--rate", str(args.profile_rate), "--function",
                 "--threads", "--subprocesses", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=open(RESULTS / f"{label}-py-spy.log", "wb"),  # noqa: SIM115
            )
            result.profile["speedscope"] = str(profile_path.relative_to(ROOT))
            profile_started = time.monotonic()
        started_at: float | None = None
        cpu_start = broker_start = 0.0
        pg_start: dict[int, float] = {}
        consumed_at: float | None = None
        timeout_at = time.monotonic() + args.timeout
        max_nid = 0
        while True:
            now = time.monotonic()
            values = replica_metrics(metrics_urls)
            processed = int(values["receivables_messages_processed_total"])
            duplicates = int(values["receivables_messages_duplicate_total"])
            deadlettered = int(values["receivables_messages_deadlettered_total"])
            done = processed + duplicates + deadlettered
            projected = int(values.get("follower:ledger-projections", 0))
            outbox = int(values.get("follower:outbox", 0))
            if started_at is None and done > 0:
                # the first batch(es) already took this long before the poll saw them
                started_at = now - values.get("receivables_batch_seconds_sum", 0.0)
                cpu_start = sum(tree_cpu_seconds(s.pid) for s in services)
                pg_start = postgres_cpu_seconds() if kind == "postgres" else {}
                broker_start = cpu_seconds(broker_pid) if broker_pid else 0.0
                log(f"{kind}: consumption started")
            if started_at is not None:
                result.timeline.append((round(now - started_at, 2), done, projected, outbox))
            if consumed_at is None and done >= published:
                consumed_at = now
                max_nid = max_notification_id(db)
                log(f"{kind}: all {published} messages consumed in {now - started_at:.1f}s "
                    f"(projections at {projected}/{max_nid})")
            if consumed_at is not None and projected >= max_nid and started_at is not None:
                result.seconds = now - started_at
                result.consumed_seconds = consumed_at - started_at
                result.service_cpu_cores = (sum(tree_cpu_seconds(s.pid) for s in services)
                                            - cpu_start) / result.seconds
                if kind == "postgres":
                    result.postgres_cpu_cores = postgres_cpu_since(pg_start) / result.seconds
                if broker_pid:
                    result.broker_cpu_cores = (cpu_seconds(broker_pid) - broker_start) / result.seconds
                result.processed, result.duplicates, result.deadlettered = processed, duplicates, deadlettered
                result.batches = int(values.get("receivables_batch_size_count", 0))
                result.stored_events = max_nid
                result.completed = True
                if outbox >= max_nid:
                    result.outbox_seconds = result.seconds
                break
            if now > timeout_at:
                log(f"{kind}: TIMEOUT after {args.timeout}s: {done}/{published} messages, "
                    f"projections {projected}, outbox {outbox}")
                result.processed, result.duplicates, result.deadlettered = processed, duplicates, deadlettered
                break
            time.sleep(args.poll)
        if profiler is not None:
            profile_wall = time.monotonic() - profile_started
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=120)
            profiler = None
        if result.completed and result.outbox_seconds is None:
            outbox_deadline = time.monotonic() + 600
            while time.monotonic() < outbox_deadline:
                values = replica_metrics(metrics_urls)
                if values.get("follower:outbox", 0) >= max_nid:
                    assert started_at is not None
                    result.outbox_seconds = time.monotonic() - started_at
                    break
                time.sleep(args.poll)
        if result.completed:
            result.messages_per_second = published / result.seconds
            result.events_per_second = result.stored_events / result.seconds
            result.read_models = read_model_counts(db)
            result.mean_event_bytes = mean_event_bytes(db)
            reasons = asyncio.run(deadletter_reasons(bootstrap, deadletter_since))
            result.deadletter_reasons = dict(reasons.most_common(10))
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=60)
        for process in services:
            process.send_signal(signal.SIGTERM)
        for process in services:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        service_log.close()
        if not args.keep:
            db.drop()
        else:
            log(f"{kind}: kept the database {db.url}")
    if args.profile and "speedscope" in result.profile:
        summary_path = RESULTS / f"{label}-profile.txt"
        try:
            summary_path.write_text(summarize(ROOT / result.profile["speedscope"], profile_wall,
                                              top=args.top))
            result.profile["summary"] = str(summary_path.relative_to(ROOT))
        except Exception as error:  # the figures stand without the profile
            log(f"{kind}: could not summarize the profile: {error}")
    return result


# ---------------------------------------------------------------------------- profile

# Stages of the ingest path, recognised by a frame on the stack (the outermost match wins).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("consumer: decode + validate (pydantic)", ("decode_record",)),
    ("consumer: domain, apply to accounts (prepare)", ("LedgerApplication.prepare",)),
    ("consumer: event store write (commit)", ("LedgerApplication.commit",)),
    ("consumer: dead letters", ("KafkaConsumerLoop.dead_letter",)),
    ("consumer: positions", ("Positions.load", "TrackedApplication.position")),
    ("projections: read models", ("LedgerProjector.apply",)),
    ("followers: read notification log", ("select_notifications",)),
    ("outbox: translate + produce", ("OutboxRelay.process",)),
    ("outbox: record position", ("TrackedApplication.record_position",)),
    ("kafka client (aiokafka fetch/produce)", ("aiokafka/",)),
    ("http /metrics", ("starlette/", "fastapi/", "prometheus_client/", "uvicorn/protocols/")),
]
# The event loop's own frames, below every task: a sample that ends in one of them is the
# loop in C (uvloop: polling, socket I/O, callbacks) rather than in a Python task.
LOOP_ROOTS = ("Runner.run", "asyncio_run", "Server.run", "Server.serve", "run")


def _short(frame: dict[str, Any]) -> str:
    path = str(frame.get("file") or "")
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{frame['name']} ({path}:{frame.get('line')})"


def _stage(names: list[str], files: list[str]) -> tuple[str, int]:
    if names[-1] in LOOP_ROOTS:
        return "event loop in C (uvloop: poll, socket I/O)", len(names)
    for depth, (name, path) in enumerate(zip(names, files, strict=True)):
        for stage, markers in STAGES:
            if any(m in name or (m.endswith("/") and m in path) for m in markers):
                return stage, depth
    return "event loop, threads, other", len(names)


def summarize(path: Path, wall_seconds: float, top: int = 30) -> str:
    """A text summary of a py-spy speedscope profile: per thread, per stage, hottest functions."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    labels = [_short(f) for f in frames]
    names = [str(f["name"]) for f in frames]
    files = [str(f.get("file") or "") for f in frames]
    by_thread: collections.Counter[str] = collections.Counter()
    by_stage: collections.Counter[str] = collections.Counter()
    inside_stage: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if names[stack[0]].startswith("thread ("):  # --threads: the root frame names the thread
                thread, stack = names[stack[0]].partition(": ")[2], stack[1:]
            else:
                thread = str(profile["name"])
            if thread.startswith(("asyncio_", "uvloop_")):
                thread = "worker threads (asyncio.to_thread)"
            if not stack:
                continue
            total += weight
            by_thread[thread] += weight
            stage, depth = _stage([names[i] for i in stack], [files[i] for i in stack])
            by_stage[stage] += weight
            for label in {labels[i] for i in stack[depth + 1:]}:
                inside_stage[stage][label] += weight
            own[labels[stack[-1]]] += weight
            for label in {labels[i] for i in stack}:
                inclusive[label] += weight
    if not total:
        return "no samples\n"
    lines = [f"py-spy profile {path.name}: {total:.1f} s of samples of running threads over "
             f"{wall_seconds:.1f} s of wall time ({total / max(wall_seconds, 1e-9):.2f} threads running "
             "on average; a thread waiting for the GIL may count as running)", ""]
    lines.append("by thread:")
    lines += [f"  {w / total:6.1%} {w:8.1f}s  {name}" for name, w in by_thread.most_common()]
    lines += ["", "by stage (outermost recognised frame):"]
    for stage, w in by_stage.most_common():
        lines.append(f"  {w / total:6.1%} {w:8.1f}s  {stage}")
        for label, inner in inside_stage[stage].most_common(6):
            lines.append(f"{'':22}{inner / total:6.1%}  {label}")
    lines += ["", f"top {top} functions by own time:"]
    lines += [f"  {w / total:6.1%}  {label}" for label, w in own.most_common(top)]
    lines += ["", f"top {top} functions by inclusive time:"]
    lines += [f"  {w / total:6.1%}  {label}" for label, w in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- report


def report(book: Book, baselines: dict[str, dict[str, Any]], runs: dict[str, RunResult],
           goal: float, ratio_goal: float, pairs: dict[str, str] | None = None,
           advance_goal: float = 0.95) -> str:
    """The table; ``pairs``: plain run name -> the advance book's run name on the same database."""
    lines = []
    width = max([12, *(len(kind) for kind in runs)])
    header = (f"{'database':<{width}} {'messages':>9} {'events':>8} {'seconds':>8} {'msg/s':>8} "
              f"{'events/s':>9} {'raw rows/s':>10} {'ratio':>6} {'goal':>5} {'consumed':>9} {'outbox':>7} "
              f"{'DL':>4} {'dup':>5} {'cpu svc':>7} {'cpu pg':>6} {'batch':>6}")
    lines.append(header)
    lines.append("-" * len(header))
    for kind, run in runs.items():
        raw = baselines.get(run.db, {}).get("rows_per_second", 0.0)
        if not run.completed:
            lines.append(f"{kind:<{width}} did not complete: "
                         f"{run.processed + run.duplicates + run.deadlettered}"
                         f"/{run.messages} messages")
            continue
        ratio = run.messages_per_second / raw if raw else 0.0
        met = run.messages_per_second >= goal and ratio >= ratio_goal
        lines.append(
            f"{kind:<{width}} {run.messages:>9} {run.stored_events:>8} {run.seconds:>8.1f} "
            f"{run.messages_per_second:>8.0f} {run.events_per_second:>9.0f} {raw:>10.0f} {ratio:>6.1%} "
            f"{'yes' if met else 'NO':>5} {run.consumed_seconds:>8.1f}s "
            f"{(f'{run.outbox_seconds:.1f}s' if run.outbox_seconds else '-'):>7} {run.deadlettered:>4} "
            f"{run.duplicates:>5} {run.service_cpu_cores:>7.2f} "
            f"{(f'{run.postgres_cpu_cores:.2f}' if run.postgres_cpu_cores is not None else '-'):>6} "
            f"{run.messages / max(run.batches, 1):>6.0f}"
        )
    lines.append("")
    lines.append(f"goal: >= {goal:.0f} messages/s and >= {ratio_goal:.0%} of the raw baseline "
                 f"(raw: executemany, batches of {RAW_BATCH}, rows the mean size of the stored events)")
    lines.append("seconds: first processed message -> every message processed and projections at the "
                 "max notification id; consumed: -> every message processed; outbox: -> relay caught up;")
    lines.append("events: domain events stored; DL: dead-lettered; dup: duplicates; cpu: cores used by the "
                 "service / by PostgreSQL; batch: messages per consumer transaction")
    for kind, run in runs.items():
        if run.read_models:
            state = "agree" if consistent(run.read_models) else "DISAGREE"
            lines.append(f"{kind} read models: {run.read_models['ledger_invoices']} invoices, "
                         f"{run.read_models['ledger_movements']} movements; open amounts and unapplied "
                         f"cash per invoice, per balance and as movements {state}")
    for kind, run in runs.items():
        if run.deadletter_reasons:
            reasons = "; ".join(f"{count} x {reason}" for reason, count in run.deadletter_reasons.items())
            lines.append(f"{kind} dead letters: {reasons}")
    if pairs:
        for kind, run in runs.items():
            if run.completed:
                state = "as expected" if run.deadlettered == run.invalid_messages else "UNEXPECTED"
                lines.append(f"{kind}: {run.deadlettered} dead-lettered, the book has {run.invalid_messages} "
                             f"invalid messages ({state}); {run.advance_messages} advance-receipt messages")
        lines.append("")
        for plain_name, advance_name in pairs.items():
            plain, advance = runs[plain_name], runs[advance_name]
            if not (plain.completed and advance.completed):
                lines.append(f"{advance_name} / {plain_name}: a run did not complete")
                continue
            ratio = advance.messages_per_second / plain.messages_per_second
            met = ratio >= advance_goal and advance.deadlettered == advance.invalid_messages
            raw = baselines.get(plain.db, {}).get("rows_per_second", 0.0)
            of_raw = (f" ({plain.messages_per_second / raw:.1%} and {advance.messages_per_second / raw:.1%} "
                      "of the raw baseline)") if raw else ""
            lines.append(
                f"{advance_name} / {plain_name}: {advance.messages_per_second:.0f} / "
                f"{plain.messages_per_second:.0f} msg/s = {ratio:.1%}{of_raw}; goal >= {advance_goal:.0%} "
                f"with only the invalid messages dead-lettered: {'yes' if met else 'NO'}")
        ratios = [runs[a].messages_per_second / runs[p].messages_per_second
                  for p, a in pairs.items() if runs[p].completed and runs[a].completed]
        if len(ratios) > 1:
            clean = all(runs[a].deadlettered == runs[a].invalid_messages for a in pairs.values())
            median = statistics.median(ratios)
            lines.append(f"median of {len(ratios)} rounds: {median:.1%} (from {min(ratios):.1%} to "
                         f"{max(ratios):.1%}); goal >= {advance_goal:.0%} with only the invalid messages "
                         f"dead-lettered: {'yes' if median >= advance_goal and clean else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300_000, help="messages published (all types)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--profile", action="store_true",
                        help="run py-spy on the service; speedscope file and top-N summary in bench/results/")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30, help="rows per table in the profile summary")
    parser.add_argument("--replicas", default="1",
                        help="ledger processes in one consumer group; a list runs each: --replicas 1,2")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each inbound topic")
    parser.add_argument("--batch-max-records", type=int, default=2000,
                        help="RECEIVABLES_BATCH_MAX_RECORDS for the service")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw insert baseline")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per ledger run")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between /metrics polls")
    parser.add_argument("--keep", action="store_true", help="keep the ledger databases")
    parser.add_argument("--goal", type=float, default=5000, help="messages per second to meet")
    parser.add_argument("--ratio-goal", type=float, default=0.10, help="share of the raw baseline to meet")
    parser.add_argument("--advance", type=float, default=0.0, metavar="SHARE",
                        help="also run a book with this share of advance-receipt traffic (prepayment "
                             "requests, tagged payments, refunds), back to back with the plain one")
    parser.add_argument("--advance-goal", type=float, default=0.95,
                        help="the advance book's rate as a share of the plain book's to meet")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --advance: run both books this many times, alternating which goes first, "
                             "and judge the median ratio")
    parser.add_argument("--advance-first", action="store_true",
                        help="run the advance book before the plain one (to see a bias of the order)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.advance <= 0.5:
        parser.error("--advance: a share between 0 and 0.5")
    try:
        replica_counts = [int(n) for n in args.replicas.split(",")]
    except ValueError:
        parser.error("--replicas: a number or a comma-separated list of numbers")
    if any(n < 1 for n in replica_counts) or (args.profile and replica_counts != [1]):
        parser.error("--replicas: at least 1 each; --profile profiles one process only")

    from shared.broker import EmbeddedBroker, create_topics

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / "data"
    workdir.mkdir(exist_ok=True)
    kinds = ["postgres", "sqlite"] if args.db == "both" else [args.db]

    started = time.perf_counter()
    book = generate_book(args.customers, args.events, seed=args.seed)
    log(f"book generated in {time.perf_counter() - started:.1f}s: {describe(book)}")
    books = {"": book}  # tag -> book; "" the plain one
    if args.advance:
        started = time.perf_counter()
        tag = f"adv{args.advance * 100:g}%"
        books[tag] = generate_book(args.customers, args.events, seed=args.seed, advance=args.advance)
        log(f"{tag} book generated in {time.perf_counter() - started:.1f}s: {describe(books[tag])}")

    baselines: dict[str, dict[str, Any]] = {}
    runs: dict[str, RunResult] = {}
    pairs: dict[str, str] = {}  # plain run -> advance run
    with contextlib.ExitStack() as brokers_open:
        brokers = {}  # a broker per book, each book published before any run
        for tag, published in books.items():
            log_name = f"{stamp}-{tag}-broker.log" if tag else f"{stamp}-broker.log"
            broker = brokers[tag] = brokers_open.enter_context(
                EmbeddedBroker(free_port(), log_path=RESULTS / log_name))
            create_topics(broker.bootstrap, {
                **{topic: args.partitions for topic in INBOUND_TOPICS},
                LEDGER_EVENTS_TOPIC: args.partitions, DEADLETTER_TOPIC: 1,
            })
            started = time.perf_counter()
            asyncio.run(publish(published, broker.bootstrap))
            elapsed = time.perf_counter() - started
            ends = asyncio.run(end_offsets(broker.bootstrap, list(INBOUND_TOPICS)))
            if sum(ends.values()) != len(published.messages):
                raise RuntimeError(f"published {len(published.messages)} messages but the broker "
                                   f"holds {ends}")
            log(f"published {len(published.messages)} messages{f' ({tag})' if tag else ''} to "
                f"{broker.bootstrap} in {elapsed:.1f}s ({len(published.messages) / elapsed:.0f}/s)")
        for kind in kinds:
            for replicas, round_ in ((r, n) for r in replica_counts for n in range(args.rounds)):
                # rounds alternate which book goes first (a bias of the order cancels out)
                flipped = args.advance_first != (round_ % 2 == 1)
                order = list(books.items())[::-1] if flipped else books.items()
                for tag, published in order:  # back to back on the same database kind
                    plain_name = kind if replicas == 1 else f"{kind} x{replicas}"
                    if args.rounds > 1:
                        plain_name += f" #{round_ + 1}"
                    name = f"{plain_name} {tag}" if tag else plain_name
                    broker = brokers[tag]
                    runs[name] = run = run_ledger(kind, published, broker.bootstrap, broker.pid, args,
                                                  workdir, stamp, replicas, tag=tag.rstrip("%"))
                    if tag:
                        pairs[plain_name] = name
                    if run.completed:
                        log(f"{name}: {run.messages_per_second:.0f} messages/s, {run.events_per_second:.0f} "
                            f"events/s over {run.seconds:.1f}s; {run.deadlettered} dead-lettered")
            if not args.no_baseline:
                # after the runs, with rows the size of the events they stored
                first = kind if 1 in replica_counts else f"{kind} x{replica_counts[0]}"
                size = runs[first if args.rounds == 1 else f"{first} #1"].mean_event_bytes
                log(f"{kind}: raw baseline, {len(book.messages)} rows of {size} bytes")
                baselines[kind] = raw_baseline(kind, len(book.messages), workdir, size)
                log(f"{kind}: raw baseline {baselines[kind]['rows_per_second']:.0f} rows/s")

    text = report(book, baselines, runs, args.goal, args.ratio_goal, pairs, args.advance_goal)
    print()
    print(f"book: {describe(book)}")
    for tag, other in books.items():
        if tag:
            print(f"{tag} book: {describe(other)}")
    print(f"machine: {os.cpu_count()} CPUs; {sys.version.split()[0]}")
    print()
    print(text)
    for run in runs.values():
        if run.profile:
            print(f"{run.db} profile: {', '.join(run.profile.values())}")
    out = RESULTS / f"{stamp}-ingest.json"
    out.write_text(json.dumps({
        "args": vars(args), "book": {"messages": len(book.messages), "customers": book.customers,
                                     "counts": dict(book.counts), "per_topic": dict(book.per_topic)},
        **({"advance_books": {tag: {"advance": other.advance, "advance_messages": advance_messages(other),
                                    "tagged_payments": other.tagged, "counts": dict(other.counts),
                                    "per_topic": dict(other.per_topic)}
                              for tag, other in books.items() if tag}} if args.advance else {}),
        "baselines": baselines, "runs": {k: asdict(v) for k, v in runs.items()},
    }, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if all(r.completed for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
