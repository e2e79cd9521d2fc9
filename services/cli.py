"""The ``receivables`` command: ``dev`` (the whole stack locally), ``serve``, ``replay``, and the
ledger's payment models: ``train``, ``backtest``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("receivables")

DEFAULT_PORTS = {"ledger": 8001, "dunning": 8002, "credit": 8003}
DEFAULT_BASE_PORT = 8000  # `dev --base-port N` moves the services to N+1, N+2, N+3
# The console and portal (services/console): on the base port itself; it has no store and
# consumes no topic, so it is not one of the DEFAULT_PORTS services above.
CONSOLE_PORT = DEFAULT_BASE_PORT
DEFAULT_KAFKA_PORT = 9092
# The embedded broker auto-creates a topic that any client names, with 4 partitions: after
# it restarts, a service's client may well get there before `dev` creates the topics again,
# so `dev` uses 4 too and a customer's key maps to the same partition whoever was first.
TOPICS = dict.fromkeys((
    "ar.invoices", "ar.payments", "ar.disputes", "ar.customers", "ar.ratings",
    "ar.ledger.events", "ar.dunning.actions", "ar.credit.events", "ar.deadletter",
), 4)


def _app_factories() -> dict[str, Callable[..., FastAPI]]:
    """The services that exist, by name (imported lazily: no objects built at import time)."""
    from services.credit.service import create_app as credit
    from services.dunning.service import create_app as dunning
    from services.ledger.service import create_app as ledger

    return {"ledger": ledger, "dunning": dunning, "credit": credit}


def _settings(service: str, **overrides: Any) -> Any:
    from shared.settings import ServiceSettings

    clean = {k: v for k, v in overrides.items() if v is not None}
    return ServiceSettings.for_service(service, **clean)


def _server(app: FastAPI, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    return uvicorn.Server(config)


def _console_settings(**overrides: Any) -> Any:
    from services.console.settings import ConsoleSettings

    return ConsoleSettings(**{k: v for k, v in overrides.items() if v is not None})


def serve_console(args: argparse.Namespace) -> int:
    """``receivables serve console``: refuses to start without RECEIVABLES_CONSOLE_SECRET."""
    from pydantic import ValidationError

    from services.console.service import create_app

    try:
        settings = _console_settings()
    except ValidationError as error:
        for problem in error.errors():
            message = problem["msg"].removeprefix("Value error, ")
            print(f"receivables serve console: {message}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(create_app(settings), host=args.host, port=args.port or CONSOLE_PORT, log_level="info")
    return 0


def serve(args: argparse.Namespace) -> int:
    if args.service == "console":
        return serve_console(args)
    factories = _app_factories()
    if args.service not in factories:
        print(f"receivables: the {args.service} service is not built yet", file=sys.stderr)
        return 2
    settings = _settings(args.service)
    port = args.port or DEFAULT_PORTS[args.service]
    import uvicorn

    uvicorn.run(factories[args.service](settings), host=args.host, port=port, log_level="info")
    return 0


def _dev_ports(base_port: int) -> dict[str, int]:
    return {name: port - DEFAULT_BASE_PORT + base_port for name, port in DEFAULT_PORTS.items()}


def _broker_lost(apps: list[FastAPI]) -> None:
    """Tell the services' consumers that the embedded broker lost its messages: they start
    every partition again at offset 0 rather than guess it from the partitions' new ends."""
    for app in apps:
        runtime = getattr(app.state, "runtime", None)  # there once the service has started
        if runtime is not None:
            runtime.broker_lost()


async def _dev(args: argparse.Namespace) -> int:
    from shared.broker import BrokerError, BrokerSupervisor, EmbeddedBroker, create_topics

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _dev_ports(args.base_port)
    supervisor = None
    bootstrap = args.kafka
    try:
        if bootstrap is None:
            # Dies with this process however it ends, SIGKILL included, and is forked here, by
            # the main thread, because the parent-death signal follows the forking thread.
            broker = EmbeddedBroker(args.kafka_port, log_path=data_dir / "broker.log", die_with_parent=True)
            supervisor = BrokerSupervisor(broker, TOPICS)
            await supervisor.start()
            bootstrap = broker.bootstrap
        else:
            await asyncio.to_thread(create_topics, bootstrap, TOPICS)
    except BrokerError as error:
        print(f"receivables dev: {error}\n(`--kafka-port N` runs the embedded broker on another port)",
              file=sys.stderr)
        return 1
    tokens = os.environ.get("RECEIVABLES_API_TOKENS_FILE")
    auth = "enabled" if tokens else "disabled"
    if auth == "disabled":
        log.warning(
            "\n%s\n  AUTH IS DISABLED: every request is allowed. Set RECEIVABLES_API_TOKENS_FILE to\n"
            "  enable bearer tokens. Never run like this outside a developer's machine.\n%s",
            "!" * 78, "!" * 78,
        )
    servers, apps = [], []
    for name, factory in _app_factories().items():
        url = args.database_url or f"sqlite:///{data_dir / (name + '.db')}"
        settings = _settings(name, kafka_bootstrap=bootstrap, database_url=url, auth=auth,
                             dev_mode=True, session_timeout_ms=2000,
                             ledger_url=f"http://127.0.0.1:{ports['ledger']}")  # (its predictions)
        apps.append(factory(settings))
        servers.append((name, _server(apps[-1], "127.0.0.1", ports[name])))
    servers.append(("console", _server(_dev_console(args, data_dir, bootstrap, ports, auth),
                                       "127.0.0.1", args.base_port)))
    if supervisor is not None:
        supervisor.on_lost = lambda: _broker_lost(apps)
    tasks = [asyncio.create_task(server.serve()) for _, server in servers]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    watching = None
    if supervisor is not None:
        watching = asyncio.create_task(supervisor.run())
        watching.add_done_callback(lambda _: stop.set())  # it only ends early when it gave up
    while not all(server.started for _, server in servers):
        if any(task.done() for task in tasks):
            stop.set()
        if stop.is_set():
            break
        await asyncio.sleep(0.05)
    if not stop.is_set():
        embedded = ""
        if supervisor is not None:
            embedded = f"  (embedded, memory only, pid {supervisor.broker.pid}; restarted if it dies)"
        print(f"Kafka      {bootstrap}{embedded}")
        for name, _ in servers:
            if name == "console":
                print(f"{name:<10} http://127.0.0.1:{args.base_port}   (the console and the customer portal)")
            else:
                print(f"{name:<10} http://127.0.0.1:{ports[name]}   (docs: /docs)")
        print(f"data       {data_dir}")
        print("Ctrl-C stops everything.", flush=True)
        await stop.wait()
    for _, server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    broker_failed = False
    if supervisor is not None and watching is not None:
        supervisor.stop()
        try:
            await watching
        except BrokerError as error:
            log.error("receivables dev stops: %s", error)
            broker_failed = True
        await asyncio.to_thread(supervisor.broker.stop)
    failed = [name for (name, _), task in zip(servers, tasks, strict=True)
              if task.done() and not task.cancelled() and task.exception()]
    return 1 if failed or broker_failed else 0


def _dev_console(args: argparse.Namespace, data_dir: Path, bootstrap: str, ports: dict[str, int],
                 auth: str) -> FastAPI:
    """The console under `dev`: a secret kept in the data dir unless RECEIVABLES_CONSOLE_SECRET is set."""
    from services.console.service import create_app
    from services.console.settings import dev_secret

    secret = os.environ.get("RECEIVABLES_CONSOLE_SECRET") or dev_secret(data_dir)
    urls = {f"{name}_url": f"http://127.0.0.1:{port}" for name, port in ports.items()}
    settings = _console_settings(console_secret=secret, kafka_bootstrap=bootstrap, auth=auth, dev_mode=True,
                                 public_url=f"http://127.0.0.1:{args.base_port}", **urls)
    return create_app(settings)


def dev(args: argparse.Namespace) -> int:
    # uvloop, as uvicorn runs each service on its own and the followers' processes run
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_dev(args))
    return uvloop.run(_dev(args))


def replay(args: argparse.Namespace) -> int:
    if args.service == "credit":
        from services.credit.replay import replay_credit

        return replay_credit(_settings("credit"), verify=args.verify)
    if args.service == "dunning":
        from services.dunning.replay import replay_dunning

        return replay_dunning(_settings("dunning"), verify=args.verify)
    if args.service != "ledger":
        print(f"receivables: replay of {args.service} is not built yet", file=sys.stderr)
        return 2
    from services.ledger.replay.online import replay_ledger

    return replay_ledger(_settings("ledger"), verify=args.verify)


def train(args: argparse.Namespace) -> int:
    """``receivables train ledger``: fit and store a payment model version (as POST /admin/models)."""
    from datetime import UTC, datetime

    from services.ledger.predictions.store import train as train_model
    from services.ledger.read.schema import migrate_read_models
    from shared.db import make_engine
    from shared.runtime import tune_gc

    tune_gc()  # as the service does (training builds millions of objects; each full collection walks all)
    settings = _settings("ledger")
    migrate_read_models(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        now = datetime.now(UTC)
        until = datetime.fromisoformat(args.until) if args.until else now
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
        print(json.dumps(train_model(engine, min(until, now), now, args.seed), default=str, indent=2))
    finally:
        engine.dispose()
    return 0


def backtest(args: argparse.Namespace) -> int:
    """``receivables backtest ledger --cutoff DATE ...``: train as of each cut-off, predict what was
    open then, compare with what happened and with the baselines (nothing is stored)."""
    from datetime import UTC, date, datetime

    from sqlalchemy import select

    from services.ledger.predictions.backtest import backtest as run_backtest
    from services.ledger.predictions.backtest import report
    from services.ledger.predictions.history import customer_records
    from services.ledger.read.projections import invoices
    from shared.db import make_engine
    from shared.runtime import tune_gc

    tune_gc()  # (as for train)
    engine = make_engine(_settings("ledger").database_url)
    try:
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(select(invoices.c.customer_id).distinct())]
            records = customer_records(conn, ids)
    finally:
        engine.dispose()
    cutoffs = [date.fromisoformat(c) for c in args.cutoff]
    results = run_backtest(records, cutoffs, datetime.now(UTC), args.seed)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="receivables", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("dev", help="embedded broker + all services on SQLite, one command")
    p.add_argument("--data-dir", default="./.receivables")
    p.add_argument("--kafka", help="use this Kafka instead of the embedded broker")
    p.add_argument("--database-url", help="one SQLAlchemy URL for all services instead of SQLite files")
    p.add_argument("--kafka-port", type=int,
                   help=f"port of the embedded broker on 127.0.0.1 (default {DEFAULT_KAFKA_PORT})")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=f"the console listens on BASE, the services on BASE+1 (ledger), BASE+2 (dunning), "
                        f"BASE+3 (credit) "
                        f"(default {DEFAULT_BASE_PORT})")
    p.set_defaults(run=dev)
    p = commands.add_parser("serve", help="run one service (settings from the environment)")
    p.add_argument("service", choices=sorted([*DEFAULT_PORTS, "console"]))
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int)
    p.set_defaults(run=serve)
    p = commands.add_parser("replay", help="rebuild a service's read models from its event store")
    p.add_argument("service", choices=sorted(DEFAULT_PORTS))
    p.add_argument("--verify", action="store_true", help="compare the rebuilt tables with the live ones")
    p.set_defaults(run=replay)
    p = commands.add_parser("train", help="fit and store a payment model version (the ledger's)")
    p.add_argument("service", choices=["ledger"])
    p.add_argument("--until", help="cut-off instant: what was recorded by then (default now)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(run=train)
    p = commands.add_parser("backtest", help="the payment model against what happened, per cut-off")
    p.add_argument("service", choices=["ledger"])
    p.add_argument("--cutoff", action="append", required=True, help="a business date (repeat for more)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="the figures as JSON instead of a table")
    p.set_defaults(run=backtest)
    args = parser.parse_args(argv)
    if args.command == "dev":
        if args.kafka is not None and args.kafka_port is not None:
            parser.error("--kafka-port is the embedded broker's port: it goes without --kafka")
        args.kafka_port = args.kafka_port or DEFAULT_KAFKA_PORT
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
