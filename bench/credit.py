"""Credit-check benchmark: ``POST /credit-checks`` under load, next to a trivial FastAPI endpoint.

Both servers run as processes of their own under the same uvicorn configuration (uvloop,
httptools, one worker, no access log); the load comes from this process over loopback,
through a minimal keep-alive HTTP/1.1 client (so the client costs little next to the
server). The trivial endpoint's throughput is measured again after the credit servers: the
goal's ratio is taken against the mean of its two runs (this machine's speed drifts by the
minute). For each server, two phases:

1. **throughput**: ``--connections`` closed-loop clients, each sending its next request as
   soon as the previous answer arrived, for ``--seconds`` (at most ``--max-requests``);
   For context, the same is measured for the check route's framework cost alone: a FastAPI
   endpoint with the same body model and scope check answering a constant;
2. **fixed rate**: ``--rate`` requests per second, open loop: each request has a scheduled
   send time and its latency counts from then (a slow answer delays no measurement), over
   ``--seconds``.

The credit service runs as ``receivables serve credit`` would (auth on with a tokens file,
its followers in a child process, an embedded broker for its consumer), on SQLite (a file
of its own) or PostgreSQL (a fresh database); ``--customers`` customers get a limit first
(``PUT /customers/{id}/credit-limit``), then every check is a new order of a random
customer (an approval: one reservation event stored per check).

Usage (from the repository root)::

    python -m bench.credit                       # SQLite and PostgreSQL, 10 s per phase
    python -m bench.credit --db sqlite --seconds 5 --rate 500
    python -m bench.credit --lane off            # every check through the FastAPI route

Goal: p99 <= 20 ms at 500 requests/s, and throughput >= 50% of the trivial endpoint's.
Results (JSON, server logs) go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

# module level: the endpoints' annotations are resolved against this module's globals
from services.credit.api import CheckIn
from shared.auth import CreditChecker

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def trivial_app() -> Any:
    """The floor: a FastAPI endpoint that reads nothing and answers a constant."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/trivial")
    async def trivial() -> dict[str, str]:
        return {"status": "ok"}

    return app


def framework_app() -> Any:
    """For context, not a goal: the credit-check route's framework cost alone (the same body
    parameter, ``CheckIn``, and the same scope dependency, ``CreditChecker``), answering a constant."""
    from fastapi import FastAPI, Response

    from shared.auth import AuthState
    from shared.tokens import TokenRegistry

    app = FastAPI()
    app.state.auth = AuthState(True, TokenRegistry.from_mapping({TOKEN: ["credit:check"]}))

    @app.post("/credit-checks")
    async def check(check: CheckIn, _: CreditChecker) -> Response:
        return Response(b'{"decision":"approve"}', media_type="application/json")

    return app


# --------------------------------------------------------------------------- the client


class Connection:
    """One keep-alive HTTP/1.1 connection; answers are read by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        marker = head.lower().find(b"content-length:")
        length = int(head[marker + 15:head.index(b"\r\n", marker)]) if marker >= 0 else 0
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        self.writer.close()


def post(path: str, body: dict[str, Any], token: str | None = TOKEN) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


class Requests:
    """The requests of a phase: a new order of a random customer each time (or the trivial one)."""

    def __init__(self, kind: str, customers: int, seed: int) -> None:
        self.kind = kind
        self.customers = customers
        self.random = random.Random(seed)
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        if self.kind == "trivial":
            return post("/trivial", self._body())
        return post("/credit-checks", self._body())

    def _body(self) -> dict[str, Any]:
        customer = f"BENCH-{self.random.randrange(self.customers):05d}"
        return {"customer_id": customer, "order_id": f"{customer}-{os.getpid()}-{self.count}",
                "amount": "10.00", "currency": "EUR", "on": "2025-06-02"}


@dataclass
class Phase:
    server: str
    phase: str
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_seconds: float
    server_cpu_seconds: float = 0.0  # the server process and its children (the followers)
    checks_per_group: float | None = None  # credit only: checks saved per transaction, on average


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _phase(server: str, name: str, latencies: list[float], errors: int, seconds: float,
           cpu: float) -> Phase:
    ordered = sorted(latencies)
    ms = [v * 1000 for v in (_percentile(ordered, 0.5), _percentile(ordered, 0.9), _percentile(ordered, 0.99),
                             ordered[-1] if ordered else float("nan"))]
    p50, p90, p99, worst = (round(v, 2) for v in ms)
    return Phase(server, name, len(latencies), errors, round(seconds, 2), round(len(latencies) / seconds, 1),
                 p50, p90, p99, worst, round(cpu, 2))


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return total


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(server: str, port: int, requests: Requests, connections: int, seconds: float,
                      max_requests: int) -> Phase:
    pool = [await Connection.open(port) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    cpu = _cpu()

    async def client(connection: Connection) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
            raw = requests.next()
            sent = time.perf_counter()
            status, _ = await connection.request(raw)
            if status == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in pool))
    elapsed = time.perf_counter() - started
    for connection in pool:
        connection.close()
    return _phase(server, f"throughput ({connections} connections)", latencies, errors, elapsed, _cpu() - cpu)


async def open_loop(server: str, port: int, requests: Requests, rate: float, seconds: float,
                    max_requests: int, connections: int) -> Phase:
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0
    total = min(int(rate * seconds), max_requests)
    cpu = _cpu()
    tasks = []

    async def one(scheduled: float) -> None:
        nonlocal errors
        connection = await idle.get()  # waiting for a connection counts: it is the server's backlog
        status, _ = await connection.request(requests.next())
        idle.put_nowait(connection)
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    started = time.perf_counter()
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()
    return _phase(server, f"fixed rate {rate:g}/s", latencies, errors, elapsed, _cpu() - cpu)


# --------------------------------------------------------------------------- the servers


def free_port() -> int:
    from shared.broker import free_port as find

    return find()


class Server:
    def __init__(self, name: str, target: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    async def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log_path}")
            try:
                connection = await Connection.open(self.port)
                connection.writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = await connection.reader.readuntil(b"\r\n\r\n")
                connection.close()
                if head[9:12] == b"200":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s: see {self.log_path}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()


async def measure(server: Server, kind: str, args: argparse.Namespace,
                  names: tuple[str, ...] = ("throughput", "rate")) -> list[Phase]:
    phases: list[Phase] = []
    for name in names:
        requests = Requests(kind, args.customers, args.seed + len(phases))
        await closed_loop(server.name, server.port, requests, args.connections, 1.0, 10_000)  # warm up
        profiler = None
        if args.profile and kind == "credit" and name == "throughput":
            out = RESULTS / f"credit-{server.name.split('(')[-1].rstrip(')')}-{name}.pyspy.txt"
            profiler = subprocess.Popen(
                ["py-spy", "record", "--pid", str(server.process.pid), "--format", "raw", "--rate", "200",
                 "--nonblocking", "--duration", str(int(args.seconds)), "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server_cpu = process_tree_cpu(server.process.pid)
        groups = await group_sizes(server.port) if kind == "credit" else None
        if name == "throughput":
            phase = await closed_loop(server.name, server.port, requests, args.connections, args.seconds,
                                      args.max_requests)
        else:
            phase = await open_loop(server.name, server.port, requests, args.rate, args.seconds,
                                    args.max_requests, args.connections)
        phase.server_cpu_seconds = round(process_tree_cpu(server.process.pid) - server_cpu, 2)
        if groups is not None:
            after = await group_sizes(server.port)
            if after is not None and after[1] > groups[1]:
                phase.checks_per_group = round((after[0] - groups[0]) / (after[1] - groups[1]), 1)
        if profiler is not None:
            profiler.wait()
        per_group = f", {phase.checks_per_group} checks a group" if phase.checks_per_group else ""
        log(f"{server.name:>16} {phase.phase:<28} {phase.throughput:>8,.0f}/s  p50 {phase.p50_ms:6.2f} ms  "
            f"p99 {phase.p99_ms:6.2f} ms  errors {phase.errors}  CPU s: server {phase.server_cpu_seconds}, "
            f"client {phase.client_cpu_seconds}{per_group}")
        phases.append(phase)
    return phases


async def group_sizes(port: int) -> tuple[float, float] | None:
    """The credit service's checks saved and transactions so far (its ``/metrics``), if it has them."""
    connection = await Connection.open(port)
    try:
        status, body = await connection.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        connection.close()
    values = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in ("receivables_credit_check_group_size_sum", "receivables_credit_check_group_size_count"):
            values[name.rsplit("_", 1)[1]] = float(value)
    return (values["sum"], values["count"]) if status == 200 and len(values) == 2 else None


async def seed_limits(port: int, customers: int) -> None:
    connection = await Connection.open(port)
    for index in range(customers):
        body = json.dumps({"currency": "EUR", "amount": "1000000000.00"}).encode()
        raw = (f"PUT /customers/BENCH-{index:05d}/credit-limit HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        status, answer = await connection.request(raw)
        if status != 200:
            raise RuntimeError(f"limit for BENCH-{index:05d}: {status} {answer!r}")
    connection.close()


async def measure_floor(env: dict[str, str], stamp: str, args: argparse.Namespace, *,
                        again: bool = False) -> list[dict[str, Any]]:
    """The trivial endpoint, on a server of its own: both phases, or (``again``) its throughput."""
    name, log_name, phases = (("trivial FastAPI (again)", "trivial-again", ("throughput",)) if again
                              else ("trivial FastAPI", "trivial", ("throughput", "rate")))
    trivial = Server(name, "bench.credit:trivial_app", env, RESULTS / f"credit-{stamp}-{log_name}.log")
    try:
        await trivial.wait_ready("/docs")
        return [asdict(p) for p in await measure(trivial, "trivial", args, phases)]
    finally:
        trivial.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.broker import create_topics, start_on_free_port
    from shared.testing import fresh_postgres_database

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="bench-credit-"))
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: {"name": "bench", "scopes": ["credit:check", "credit:write"]}}))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
    results: dict[str, Any] = {"args": vars(args), "phases": []}
    broker = start_on_free_port(work / "broker.log")
    try:
        create_topics(broker.bootstrap, {"ar.ledger.events": 4, "ar.customers": 4, "ar.credit.events": 4,
                                         "ar.deadletter": 1})
        results["phases"] += await measure_floor(base_env, stamp, args)
        framework = Server("body+auth only", "bench.credit:framework_app", base_env,
                           RESULTS / f"credit-{stamp}-framework.log")
        try:
            await framework.wait_ready("/docs")
            results["phases"] += [asdict(p) for p in await measure(framework, "credit", args)]
        finally:
            framework.stop()
        for db in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
            with contextlib.ExitStack() as stack:
                if db == "sqlite":
                    url = f"sqlite:///{work / 'credit.db'}"
                else:
                    url = stack.enter_context(fresh_postgres_database(prefix="bench_credit_"))
                env = {**base_env, "RECEIVABLES_KAFKA_BOOTSTRAP": broker.bootstrap,
                       "RECEIVABLES_CREDIT_DATABASE_URL": url, "RECEIVABLES_API_TOKENS_FILE": str(tokens),
                       "RECEIVABLES_FOLLOWERS": args.followers,
                       "RECEIVABLES_CREDIT_CHECK_FAST_LANE": "true" if args.lane == "on" else "false"}
                credit = Server(f"credit ({db})", "services.credit.service:create_app", env,
                                RESULTS / f"credit-{stamp}-{db}.log")
                try:
                    await credit.wait_ready("/health/live")
                    started = time.perf_counter()
                    await seed_limits(credit.port, args.customers)
                    log(f"{args.customers} limits set in {time.perf_counter() - started:.1f}s")
                    results["phases"] += [asdict(p) for p in await measure(credit, "credit", args)]
                finally:
                    credit.stop()
        results["phases"] += await measure_floor(base_env, stamp, args, again=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS / f"credit-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"results in {out.relative_to(ROOT)}")
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    phases = results["phases"]
    floors = [p["throughput"] for p in phases
              if p["server"].startswith("trivial FastAPI") and p["phase"].startswith("throughput")]
    floor = sum(floors) / len(floors)
    ok = True
    print("\n| server | phase | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors "
          f"| server CPU µs/request |\n|{' --- |' * 9}")
    for p in phases:
        per_request = p["server_cpu_seconds"] / max(p["requests"], 1) * 1e6
        print(f"| {p['server']} | {p['phase']} | {p['throughput']:,.0f} | {p['p50_ms']} | {p['p90_ms']} | "
              f"{p['p99_ms']} | {p['max_ms']} | {p['errors']} | {per_request:,.0f} |")
    for p in phases:
        if not p["server"].startswith("credit"):
            continue
        if p["phase"].startswith("throughput"):
            share = p["throughput"] / floor
            passed = share >= 0.5
            each = " and ".join(f"{p['throughput'] / f:.0%}" for f in floors)
            print(f"{p['server']}: throughput {share:.0%} of the trivial endpoint's {floor:,.0f}/s, the mean "
                  f"of its runs before and after ({each} of each) "
                  f"({'meets' if passed else 'MISSES'} the 50% goal)")
        else:
            passed = p["p99_ms"] <= args.p99_goal and p["errors"] == 0
            print(f"{p['server']}: p99 {p['p99_ms']} ms at {args.rate:g}/s "
                  f"({'meets' if passed else 'MISSES'} the {args.p99_goal:g} ms goal)")
        ok = ok and passed
    return 0 if ok else 1


def on_the_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``coroutine`` run to its end on uvloop where it is installed (the load generator as fast
    as the servers' loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def load_options(parser: argparse.ArgumentParser, *, connections: int, p99_goal: float) -> None:
    """The options of a benchmark that loads a server closed-loop and then at a fixed rate
    (this one, ``bench.reads``)."""
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--max-requests", type=int, default=200_000, help="at most this many per phase")
    parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--rate", type=float, default=500.0,
                        help="requests per second of the fixed-rate phase")
    parser.add_argument("--p99-goal", type=float, default=p99_goal)
    parser.add_argument("--seed", type=int, default=7)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    load_options(parser, connections=32, p99_goal=20.0)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--followers", choices=("process", "inline"), default="process",
                        help="RECEIVABLES_FOLLOWERS of the credit service")
    parser.add_argument("--lane", choices=("on", "off"), default="on",
                        help="the credit service's fast lane for plain checks "
                             "(RECEIVABLES_CREDIT_CHECK_FAST_LANE)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy (collapsed stacks) on the credit server in the throughput phase")
    args = parser.parse_args(argv)
    return report(on_the_loop(run(args)), args)


if __name__ == "__main__":
    sys.exit(main())
