"""The console's heaviest pages against whatever book the services hold: the dashboard (aging
and DSO/CEI for one as-of date), its forecast fragment (the ledger's collections forecast,
fetched after the page) and the customer page (eight calls to the three services), as server
time (the console's ``Server-Timing``) and as wall time.

The services must be running already (``receivables dev``, ``python -m bench.stack --keep``,
production); the console is started here, in this process (uvicorn on a free port, a thread
of its own), in front of them, and signed in with ``--token`` (or with auth off, as under
``receivables dev`` without a tokens file). Customers are sampled from the ledger's aging by
customer on the as-of date.

Usage (from the repository root)::

    python -m bench.console --as-of 2024-12-31                        # the dev ports
    python -m bench.console --as-of 2024-12-31 --token T --tokens-file tokens.json \\
        --ledger-url http://127.0.0.1:8001 --customers 200 --rounds 3

The issue's target (dashboard and customer page within 1 s at p99 on the million-invoice
book) is in BENCHMARKS.md once measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.common import free_port, log
from services.console.service import create_app
from services.console.settings import ConsoleSettings


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_console(settings: ConsoleSettings) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the console did not start within 30 s")
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def sign_in(client: httpx.Client, token: str) -> None:
    form = client.get("/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf, "no sign-in form"
    answer = client.post("/sign-in", data={"token": token, "csrf_token": csrf.group(1)})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in refused ({answer.status_code}): is --token in the tokens file?")


def sample_customers(ledger_url: str, token: str | None, as_of: str, count: int, seed: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{ledger_url}/aging", params={"as_of": as_of, "group_by": "customer", "limit": 1000},
                       headers=headers, timeout=120)
    answer.raise_for_status()
    customers = [row["group"] for row in answer.json()["rows"]]
    random.Random(seed).shuffle(customers)
    return customers[:count]


def timed(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    answer = client.get(path, params=params)
    wall = (time.perf_counter() - started) * 1000
    if answer.status_code != 200 or 'role="alert"' in answer.text:
        trouble = re.search(r'role="alert">([^<]+)<', answer.text)
        raise SystemExit(f"GET {path} answered {answer.status_code}: {trouble.group(1) if trouble else ''}")
    server = float(answer.headers["server-timing"].split("dur=")[1])
    return server, wall


def run(args: argparse.Namespace) -> dict[str, Any]:
    dev = args.token is None
    settings = ConsoleSettings(
        console_secret="bench-console-secret-0123456789abcdef", ledger_url=args.ledger_url,
        dunning_url=args.dunning_url, credit_url=args.credit_url, backend_timeout_seconds=30,
        auth="disabled" if dev else "enabled", dev_mode=dev, api_tokens_file=args.tokens_file,
    )
    server, url = start_console(settings)
    try:
        customers = sample_customers(args.ledger_url, args.token, args.as_of, args.customers, args.seed)
        log(f"{len(customers)} customers sampled; {args.rounds} rounds")
        pages = ("dashboard", "forecast", "customer") if args.forecast else ("dashboard", "customer")
        results: dict[str, dict[str, list[float]]] = {page: {"server": [], "wall": []} for page in pages}
        # the raw baseline: the ledger's two answers behind the dashboard, asked directly
        raw: dict[str, list[float]] = {"ledger_aging": [], "ledger_metrics": []}
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        with httpx.Client(base_url=url, timeout=120) as client, \
                httpx.Client(base_url=args.ledger_url, timeout=120, headers=headers) as ledger:
            sign_in(client, args.token or "bench")
            timed(client, "/", {"as_of": args.as_of})  # warm: connections, templates
            for _ in range(args.rounds):
                paths = [("dashboard", "/")] * args.dashboards
                for page, path in paths + [("customer", f"/customers/{c}") for c in customers]:
                    server_ms, wall_ms = timed(client, path, {"as_of": args.as_of})
                    results[page]["server"].append(server_ms)
                    results[page]["wall"].append(wall_ms)
                for name, path in (("ledger_aging", "/aging"), ("ledger_metrics", "/metrics/receivables")):
                    for _ in range(args.dashboards):
                        started = time.perf_counter()
                        ledger.get(path, params={"as_of": args.as_of}).raise_for_status()
                        raw[name].append((time.perf_counter() - started) * 1000)
                if args.forecast:  # (last: the ledger goes on computing a forecast the console gave up on)
                    server_ms, wall_ms = timed(client, "/dashboard/forecast", {"as_of": args.as_of})
                    results["forecast"]["server"].append(server_ms)
                    results["forecast"]["wall"].append(wall_ms)
    finally:
        server.should_exit = True
    summary = {page: {kind: {"n": len(values), "p50_ms": round(statistics.median(values), 1),
                             "p99_ms": round(percentile(values, 0.99), 1), "max_ms": round(max(values), 1)}
                      for kind, values in kinds.items()} for page, kinds in results.items()}
    baselines = {name: {"n": len(values), "p50_ms": round(statistics.median(values), 1),
                        "p99_ms": round(percentile(values, 0.99), 1)} for name, values in raw.items()}
    return {"as_of": args.as_of, "customers": len(customers), "rounds": args.rounds, "pages": summary,
            "raw_baselines": baselines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--ledger-url", default="http://127.0.0.1:8001")
    parser.add_argument("--dunning-url", default="http://127.0.0.1:8002")
    parser.add_argument("--credit-url", default="http://127.0.0.1:8003")
    parser.add_argument("--token", help="a token with ledger:read, dunning:read and credit:read "
                                        "(none: the services' auth is off, as under `receivables dev`)")
    parser.add_argument("--tokens-file", type=Path, help="the services' tokens file, to sign in with --token")
    parser.add_argument("--customers", type=int, default=100, help="customer pages sampled")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dashboards", type=int, default=10, help="dashboards timed per round")
    parser.add_argument("--forecast", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the forecast fragment (once a round, last)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
