"""Read benchmark: the ledger's balance, open-items and invoice reads under load, next to a
trivial endpoint of the same service (``/health/live``), measured the same way in the same run.

The ledger service runs as ``receivables serve ledger`` would (the uvicorn factory
``services.ledger.service:create_app``: uvloop, httptools, one worker, no access log; auth on
with a tokens file; its followers in a child process; an embedded broker for its consumer),
on SQLite (a file) or PostgreSQL (a database of its own), over a seeded book: ``bench/book.py``'s
synthetic ERP messages (by default 10,000 customers, 300,000 messages) through the real
``LedgerApplication`` into the event store, and the read models built by the replay's own code
(both from ``bench/queries.py``). The load comes from this process over loopback through
``bench/credit.py``'s minimal keep-alive HTTP/1.1 client. Each request names a random existing
customer (balance, open items) or invoice, with the ``ledger:read`` bearer token.

For each endpoint, with the same server, two phases (``bench/credit.py``'s):

1. **throughput**: ``--connections`` closed-loop clients for ``--seconds``; the four endpoints
   take turns, ``--rounds`` times (this machine's speed drifts by the minute), and each read's
   share is taken against the trivial endpoint's mean over the rounds;
2. **fixed rate**: ``--rate`` requests per second, open loop (latency from each request's
   scheduled send time), for ``--seconds``.

Usage (from the repository root)::

    python -m bench.reads                               # SQLite and PostgreSQL
    python -m bench.reads --db sqlite --seconds 5 --keep  # keep the book for the next run
    python -m bench.reads --db postgres --profile       # py-spy on the server, throughput phases

Goal: each read's throughput >= 50% of the trivial endpoint's, p99 <= 10 ms at 500 requests/s.
Results (JSON, server logs, profiles) go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.credit import (
    Phase,
    Server,
    closed_loop,
    load_options,
    on_the_loop,
    open_loop,
    process_tree_cpu,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-reader"
KINDS = ("trivial", "balance", "open-items", "invoice")
TOPICS = dict.fromkeys(("ar.invoices", "ar.payments", "ar.disputes", "ar.customers", "ar.ledger.events",
                        "ar.deadletter"), 4)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Requests:
    """The requests of a phase: the endpoint ``kind`` for a random existing customer or invoice."""

    def __init__(self, kind: str, customers: list[str], invoices: list[str], seed: int) -> None:
        self.kind = kind
        self.customers, self.invoices = customers, invoices
        self.random = random.Random(seed)
        auth = f"Authorization: Bearer {TOKEN}\r\n"
        self.template = {
            "trivial": "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n",
            "balance": "GET /customers/{id}/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n",
            "open-items": "GET /customers/{id}/open-items HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n",
            "invoice": "GET /invoices/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n",
        }[kind].replace("{auth}", auth)
        self.ids = invoices if kind == "invoice" else customers

    def next(self) -> bytes:
        return self.template.replace("{id}", self.random.choice(self.ids)).encode()


# --------------------------------------------------------------------------- the book


@contextlib.contextmanager
def book_database(db: str, args: argparse.Namespace, work: Path) -> Iterator[tuple[str, bool]]:
    """The URL of a database for the book, and whether it holds one already (``--keep``)."""
    name = f"bench_reads_{args.customers}_{args.events}_{args.seed}"
    built = RESULTS / f"{name}.{db}.built"  # written once a kept book is complete
    if db == "sqlite":
        path = (RESULTS / f"{name}.db") if args.keep else (work / "ledger.db")
        if args.keep and not built.exists():
            for stale in RESULTS.glob(f"{name}.db*"):
                stale.unlink()
        yield f"sqlite:///{path}", args.keep and built.exists()
        return
    from bench.queries import create_database, database_url

    if args.keep:
        if not built.exists():
            create_database(name, replace=True)
        yield database_url(name), built.exists()
        return
    from shared.testing import fresh_postgres_database

    with fresh_postgres_database(prefix="bench_reads_") as url:
        yield url, False


def build_book(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The book through the ledger application into the event store, then the read models by
    the replay's own code (``bench/queries.py``), in a child process (its memory goes with it)."""
    code = ("import json, sys; from bench.queries import build, replay; "
            f"b = build({url!r}, {args.customers}, {args.events}, {args.seed}); "
            f"r = replay({url!r}, verify=False); print(json.dumps({{'build': b, 'replay': r}}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def sample_ids(url: str, seed: int, invoices: int) -> tuple[list[str], list[str]]:
    """Every customer of the book, and ``invoices`` of its invoices at random."""
    from sqlalchemy import select

    from services.ledger.read.projections import customers as customer_table
    from services.ledger.read.projections import invoices as invoice_table
    from shared.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            customer_ids = sorted(conn.execute(select(customer_table.c.customer_id)).scalars())
            invoice_ids = sorted(conn.execute(select(invoice_table.c.invoice_id)).scalars())
    finally:
        engine.dispose()
    return customer_ids, random.Random(seed).sample(invoice_ids, min(invoices, len(invoice_ids)))


async def wait_idle(server: Server, timeout: float) -> None:
    """Until the server and its followers are idle: the outbox relay first publishes the whole
    history to the broker (the book was stored without it), which would load the machine."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while time.monotonic() < deadline:
        before = process_tree_cpu(server.process.pid)
        await asyncio.sleep(2)
        if process_tree_cpu(server.process.pid) - before < 0.1:
            log(f"server idle after {time.monotonic() - started:.0f}s")
            return
    log(f"server still busy after {timeout:.0f}s: measuring anyway")


# --------------------------------------------------------------------------- the phases


async def measure(server: Server, kind: str, phase: str, ids: tuple[list[str], list[str]],
                  args: argparse.Namespace, seed: int) -> Phase:
    customers, invoices = ids
    await closed_loop(server.name, server.port, Requests(kind, customers, invoices, seed + 1),
                      args.connections, 1.0, 10_000)  # warm up
    requests = Requests(kind, customers, invoices, seed)
    profiler = None
    if args.profile and phase == "throughput" and kind != "trivial":
        out = RESULTS / f"reads-{args.stamp}-{server.name.split('(')[-1].rstrip(')')}-{kind}-{seed}.pyspy.txt"
        profiler = subprocess.Popen(
            ["py-spy", "record", "--pid", str(server.process.pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "--duration", str(int(args.seconds)), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server_cpu = process_tree_cpu(server.process.pid)
    if phase == "throughput":
        result = await closed_loop(kind, server.port, requests, args.connections, args.seconds,
                                   args.max_requests)
    else:
        result = await open_loop(kind, server.port, requests, args.rate, args.seconds, args.max_requests,
                                 args.connections)
    result.server_cpu_seconds = round(process_tree_cpu(server.process.pid) - server_cpu, 2)
    if profiler is not None:
        profiler.wait()
    result.server = f"{server.name}: {kind}"
    log(f"{result.server:>28} {result.phase:<28} {result.throughput:>8,.0f}/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}  CPU s: server {result.server_cpu_seconds}, "
        f"client {result.client_cpu_seconds}")
    return result


async def run_db(db: str, broker: Any, tokens: Path, work: Path, args: argparse.Namespace) -> list[Phase]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
    with book_database(db, args, work) as (url, built):
        if built:
            log(f"{db}: reusing the book in {url}")
        else:
            started = time.perf_counter()
            summary = build_book(url, args)
            log(f"{db}: book built and replayed in {time.perf_counter() - started:.0f}s: "
                f"{summary['build']['stored_events']:,} events")
            if args.keep:
                (RESULTS / f"bench_reads_{args.customers}_{args.events}_{args.seed}.{db}.built").write_text(
                    json.dumps(summary))
        ids = sample_ids(url, args.seed, args.invoices)
        log(f"{db}: {len(ids[0]):,} customers, {len(ids[1]):,} invoices sampled")
        env = {**base_env, "RECEIVABLES_KAFKA_BOOTSTRAP": broker.bootstrap,
               "RECEIVABLES_LEDGER_DATABASE_URL": url, "RECEIVABLES_API_TOKENS_FILE": str(tokens),
               "RECEIVABLES_FOLLOWERS": "process"}
        server = Server(f"ledger ({db})", "services.ledger.service:create_app", env,
                        RESULTS / f"reads-{args.stamp}-{db}.log")
        phases: list[Phase] = []
        try:
            await server.wait_ready("/health/live", timeout=120)
            await wait_idle(server, args.idle_timeout)
            for round_ in range(args.rounds):
                for index, kind in enumerate(KINDS):
                    phases.append(await measure(server, kind, "throughput", ids, args,
                                                args.seed + 100 * round_ + index))
            for index, kind in enumerate(KINDS):
                phases.append(await measure(server, kind, "rate", ids, args, args.seed + 1000 + index))
        finally:
            server.stop()
        return phases


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.broker import create_topics, start_on_free_port

    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: {"name": "bench", "scopes": ["ledger:read"]}}))
    results: dict[str, Any] = {"args": vars(args), "load_before": os.getloadavg(), "phases": []}
    broker = start_on_free_port(work / "broker.log")
    try:
        create_topics(broker.bootstrap, TOPICS)
        for db in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            results["phases"] += [asdict(p) for p in await run_db(db, broker, tokens, work, args)]
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    out = RESULTS / f"reads-{args.stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"results in {out.relative_to(ROOT)}")
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    phases = results["phases"]
    print("\n| server: endpoint | phase | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors "
          f"| server CPU µs/request |\n|{' --- |' * 9}")
    for p in phases:
        per_request = p["server_cpu_seconds"] / max(p["requests"], 1) * 1e6
        print(f"| {p['server']} | {p['phase']} | {p['throughput']:,.0f} | {p['p50_ms']} | {p['p90_ms']} | "
              f"{p['p99_ms']} | {p['max_ms']} | {p['errors']} | {per_request:,.0f} |")
    ok = True
    print()
    for server in dict.fromkeys(p["server"].split(":")[0] for p in phases):
        mine = [p for p in phases if p["server"].startswith(server + ":")]
        floors = [p["throughput"] for p in mine if p["server"].endswith(": trivial")
                  and p["phase"].startswith("throughput")]
        floor = sum(floors) / len(floors)
        for kind in KINDS[1:]:
            runs = [p for p in mine if p["server"].endswith(f": {kind}")]
            throughputs = [p["throughput"] for p in runs if p["phase"].startswith("throughput")]
            share = sum(throughputs) / len(throughputs) / floor
            rate = next(p for p in runs if p["phase"].startswith("fixed rate"))
            passed_share = share >= 0.5
            passed_p99 = rate["p99_ms"] <= args.p99_goal and rate["errors"] == 0 and all(
                p["errors"] == 0 for p in runs)
            each = ", ".join(f"{t:,.0f}/{f:,.0f}" for t, f in zip(throughputs, floors, strict=True))
            print(f"{server} {kind}: throughput {share:.0%} of /health/live's {floor:,.0f}/s "
                  f"(per round: {each}) "
                  f"({'meets' if passed_share else 'MISSES'} the 50% goal); p99 {rate['p99_ms']} ms at "
                  f"{args.rate:g}/s ({'meets' if passed_p99 else 'MISSES'} the {args.p99_goal:g} ms goal)")
            ok = ok and passed_share and passed_p99
    before, after = results["load_before"], results["load_after"]
    print(f"load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
          f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    load_options(parser, connections=16, p99_goal=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="turns of the four throughput phases")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300_000, help="messages of the synthetic book")
    parser.add_argument("--invoices", type=int, default=20_000, help="invoices sampled for the requests")
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="at most this long to wait for the followers to catch up before measuring")
    parser.add_argument("--keep", action="store_true",
                        help="keep the book (bench/results/*.db, PostgreSQL bench_reads_*); reuse a kept one")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy (raw collapsed stacks) on the server in the reads' throughput phases")
    args = parser.parse_args(argv)
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    return report(on_the_loop(run(args)), args)


if __name__ == "__main__":
    sys.exit(main())
