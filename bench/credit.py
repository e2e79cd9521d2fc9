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

``--securities on`` (``both``: plain and with securities, each on a database of its own)
puts securities, ratings and open early warnings on the book before the checks, through the
service's REST API (``seed_securities``): half the customers get a rating and a bank
guarantee valid over the checks' date, a quarter also a credit insurance (80% of the exposure,
capped), so each of their checks computes the securities' cover; a tenth get a limit of
100,000.00 and an approved order of 97,000.00 (still 92% of it unsecured), an eighth a
rating downgrade, a sixth a guarantee ending within 30 days: the registrations judge the
warning rules, and ``limit_utilisation``, ``rating_downgrade`` and ``security_expiring``
warnings are open (counted from ``GET /warnings`` and printed) while the checks run.

Usage (from the repository root)::

    python -m bench.credit                       # SQLite and PostgreSQL, 10 s per phase
    python -m bench.credit --db sqlite --seconds 5 --rate 500
    python -m bench.credit --lane off            # every check through the FastAPI route
    python -m bench.credit --securities both     # plain, then with securities and warnings

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
CHECK_DATE = "2025-06-02"  # every check's business date
NEAR_LIMIT, NEAR_ORDER = "100000.00", "97000.00"  # a tenth of the customers with --securities


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
                "amount": "10.00", "currency": "EUR", "on": CHECK_DATE}


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
            label = server.name.split('(')[-1].rstrip(')').replace(', ', '-')
            out = RESULTS / f"credit-{label}-{name}.pyspy.txt"
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


def near_limit(index: int) -> bool:
    """With ``--securities``: a customer whose limit is nearly used (a tenth)."""
    return index % 10 == 0


async def send(connection: Connection, method: str, path: str, body: dict[str, Any] | None = None,
               expect: int = 200) -> dict[str, Any]:
    """One request of the setup, answered ``expect`` (else RuntimeError): its JSON answer."""
    payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    raw = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    status, answer = await connection.request(raw)
    if status != expect:
        raise RuntimeError(f"{method} {path}: {status} {answer!r}")
    return json.loads(answer) if answer else {}


async def seed_limits(port: int, customers: int, securities: bool = False) -> None:
    """Every customer's limit: 1,000,000,000.00 EUR (with ``securities``, a tenth 100,000.00)."""
    connection = await Connection.open(port)
    for index in range(customers):
        amount = NEAR_LIMIT if securities and near_limit(index) else "1000000000.00"
        await send(connection, "PUT", f"/customers/BENCH-{index:05d}/credit-limit",
                   {"currency": "EUR", "amount": amount})
    connection.close()


async def seed_securities(port: int, customers: int) -> dict[str, Any]:
    """Securities, ratings and open warnings on the book (see the module's docstring), through
    the REST API, in this order per customer: the order that uses the limit, the ratings, the
    securities (each registration judges the warning rules on today's date). Returns what was
    registered and the open warnings by signal, as ``GET /warnings`` shows them."""
    import datetime as dt

    ending = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=20)).isoformat()
    counts = dict.fromkeys(("near_limit", "ratings", "downgrades", "bank_guarantees", "credit_insurances",
                            "ending_within_30_days"), 0)
    connection = await Connection.open(port)
    for index in range(customers):
        customer = f"BENCH-{index:05d}"
        if index % 2:
            continue  # half the book: no securities, no rating, no warning
        if near_limit(index):
            answer = await send(connection, "POST", "/credit-checks", {
                "customer_id": customer, "order_id": f"{customer}-near", "amount": NEAR_ORDER,
                "currency": "EUR", "on": CHECK_DATE})
            if answer["decision"] != "approve":
                raise RuntimeError(f"the order that uses {customer}'s limit: {answer}")
            counts["near_limit"] += 1
        ratings = [("70", "BBB", "0.01", "2025-03-01")]
        if index % 8 == 0:  # a later, worse report: a downgrade
            ratings.append(("55", "B", "0.06", "2025-05-01"))
            counts["downgrades"] += 1
        for score, grade, pd, reported in ratings:
            await send(connection, "POST", f"/customers/{customer}/ratings", {
                "provider": "bench-bureau", "score": score, "grade": grade, "probability_of_default": pd,
                "report_date": reported}, expect=201)
            counts["ratings"] += 1
        until = ending if index % 6 == 0 else "2027-12-31"
        counts["ending_within_30_days"] += index % 6 == 0
        await send(connection, "POST", f"/customers/{customer}/securities", {
            "security_id": f"BG-{customer}", "kind": "bank_guarantee", "currency": "EUR", "amount": "2000.00",
            "valid_from": "2025-01-01", "valid_until": until}, expect=201)
        counts["bank_guarantees"] += 1
        if index % 4 == 0:
            await send(connection, "POST", f"/customers/{customer}/securities", {
                "security_id": f"CI-{customer}", "kind": "credit_insurance", "currency": "EUR",
                "amount": "3000.00", "coverage_percent": "80", "valid_from": "2025-01-01"}, expect=201)
            counts["credit_insurances"] += 1
    expected = counts["near_limit"] + counts["downgrades"] + counts["ending_within_30_days"]
    deadline = time.monotonic() + 30
    while True:  # the read model the warnings are listed from follows the store
        listed = (await send(connection, "GET", "/warnings?status=open&limit=10000"))["warnings"]
        if len(listed) >= min(expected, 10_000) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    connection.close()
    signals: dict[str, int] = {}
    for warning in listed:
        signals[warning["signal"]] = signals.get(warning["signal"], 0) + 1
    return {**counts, "expected_open_warnings": expected, "open_warnings": dict(sorted(signals.items()))}


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

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="bench-credit-"))
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: {"name": "bench", "scopes": ["credit:check", "credit:write",
                                                                        "credit:read"]}}))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
    results: dict[str, Any] = {"args": vars(args), "phases": [], "setups": {}}
    setups = {"off": (False,), "on": (True,), "both": (False, True)}[args.securities]
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
            for securities in setups:
                results["phases"] += await measure_credit(db, securities, base_env, broker.bootstrap, tokens,
                                                          work, stamp, args, results["setups"])
        results["phases"] += await measure_floor(base_env, stamp, args, again=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS / f"credit-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"results in {out.relative_to(ROOT)}")
    return results


async def measure_credit(db: str, securities: bool, base_env: dict[str, str], bootstrap: str, tokens: Path,
                         work: Path, stamp: str, args: argparse.Namespace,
                         setups: dict[str, Any]) -> list[dict[str, Any]]:
    """The credit service on a fresh database: its book set up (``securities``: with securities,
    ratings and warnings), then both phases."""
    from shared.testing import fresh_postgres_database

    label = f"{db}, securities" if securities else db
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            url = f"sqlite:///{work / ('credit-securities.db' if securities else 'credit.db')}"
        else:
            url = stack.enter_context(fresh_postgres_database(prefix="bench_credit_"))
        env = {**base_env, "RECEIVABLES_KAFKA_BOOTSTRAP": bootstrap,
               "RECEIVABLES_CREDIT_DATABASE_URL": url, "RECEIVABLES_API_TOKENS_FILE": str(tokens),
               "RECEIVABLES_FOLLOWERS": args.followers,
               "RECEIVABLES_CREDIT_CHECK_FAST_LANE": "true" if args.lane == "on" else "false"}
        credit = Server(f"credit ({label})", "services.credit.service:create_app", env,
                        RESULTS / f"credit-{stamp}-{label.replace(', ', '-')}.log")
        try:
            await credit.wait_ready("/health/live")
            started = time.perf_counter()
            await seed_limits(credit.port, args.customers, securities)
            setup: dict[str, Any] = {"securities": securities, "customers": args.customers}
            if securities:
                setup |= await seed_securities(credit.port, args.customers)
            setups[credit.name] = setup
            log(f"{credit.name}: set up in {time.perf_counter() - started:.1f}s: {describe_setup(setup)}")
            return [asdict(p) for p in await measure(credit, "credit", args)]
        finally:
            credit.stop()


def describe_setup(setup: dict[str, Any]) -> str:
    if not setup["securities"]:
        return f"{setup['customers']} limits of 1,000,000,000.00 EUR, no securities, ratings or warnings"
    return (f"{setup['customers']} limits ({setup['near_limit']} of {NEAR_LIMIT} EUR with an approved order "
            f"of {NEAR_ORDER}), {setup['bank_guarantees']} bank guarantees ({setup['ending_within_30_days']} "
            f"ending within 30 days), {setup['credit_insurances']} credit insurances, {setup['ratings']} "
            f"ratings ({setup['downgrades']} downgrades); open warnings {setup['open_warnings']} "
            f"(expected {setup['expected_open_warnings']})")


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    phases = results["phases"]
    floors = [p["throughput"] for p in phases
              if p["server"].startswith("trivial FastAPI") and p["phase"].startswith("throughput")]
    floor = sum(floors) / len(floors)
    ok = True
    print()
    for name, setup in results.get("setups", {}).items():
        print(f"{name}: {describe_setup(setup)}")
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
    parser.add_argument("--securities", choices=("off", "on", "both"), default="off",
                        help="the checked customers with securities, ratings and open warnings (see above); "
                             "both: without, then with, each on a fresh database")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy (collapsed stacks) on the credit server in the throughput phase")
    args = parser.parse_args(argv)
    return report(on_the_loop(run(args)), args)


if __name__ == "__main__":
    sys.exit(main())
