"""The projectors alone: each service's read-model projector over a built event store, next to
a raw baseline of batched inserts measured in the same run.

1. **Build** (not timed) one event store per service from ``bench/book.py``'s book, without
   Kafka: the book's messages go through ``LedgerApplication.prepare``/``commit`` in batches
   of 500 (as the consumer does); after each batch the ledger's new events are translated to
   its outbound messages (``services.ledger.outbound.StoredTranslator``, as the outbox relay
   does) and, with the book's ``customer.upserted`` messages of the batch, fed to dunning's and
   credit's applications as facts (``prepare``/``commit``). The built stores are kept (a
   PostgreSQL template database; a SQLite file) and no read model is written.
2. **Time** each service's projector on a copy of its store, as its follower runs it: a
   ``SharedLog`` read of up to 2,000 notifications, then ``projector.process`` (its own
   transactions), from position 0 to the end, on a writer engine (``make_engine(...,
   writer=True)``) with fresh read models (the migrations run before the clock starts). The
   log reads and the projections are timed apart; CPU seconds of this process beside the wall.
3. **Raw baseline**: ``bench.common.raw_baseline``: event-sized rows inserted with
   ``executemany`` in batches of 1,000, one commit a batch, in the same kind of database.

Each projector's read models are digested (every table's rows, ordered by every column, as
the driver returns them) so that two versions of the code can be compared for identical
contents: the digests are printed and kept in the JSON result.

Usage (from the repository root)::

    python -m bench.projectors                                   # 2,000 customers, 40,000 messages, both DBs
    python -m bench.projectors --customers 500 --events 10000 --db sqlite
    python -m bench.projectors --repeat 3                        # best of 3 per projector
    python -m bench.projectors --profile                         # pyinstrument per projector (one repetition)

Results (JSON, profiles) go to ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.book import CUSTOMERS_TOPIC, generate_book
from bench.common import POSTGRES_BASE, RESULTS, log, raw_baseline

LEDGER_BATCH = 500
SERVICES = ("ledger", "dunning", "credit")


@dataclass
class Store:
    """A built event store: a PostgreSQL template database or a SQLite file."""

    kind: str
    service: str
    name: str  # database name or file path

    def url(self, name: str | None = None) -> str:
        if self.kind == "postgres":
            return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name or self.name}"
        return f"sqlite:///{name or self.name}"

    def copy(self, workdir: Path) -> str:
        """A fresh copy of the store; its name (database or path)."""
        if self.kind == "postgres":
            import psycopg

            name = f"bench_proj_{self.service}_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
            return name
        path = workdir / f"{self.service}-{uuid.uuid4().hex[:8]}.sqlite"
        shutil.copyfile(self.name, path)
        return str(path)

    def drop(self, name: str | None = None) -> None:
        name = name or self.name
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            read_models = Path(name).with_name(Path(name).stem + ".read-models.sqlite")  # credit's
            for path in (name, str(read_models)):
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(path + suffix).unlink()


def _new_store(kind: str, service: str, workdir: Path) -> Store:
    if kind == "postgres":
        import psycopg

        name = f"bench_projbuild_{service}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return Store(kind, service, name)
    return Store(kind, service, str(workdir / f"{service}-build.sqlite"))


# ---------------------------------------------------------------------------- build


def build(kind: str, customers: int, events: int, workdir: Path) -> dict[str, Store]:
    """The three event stores, filled from the book (see the module's docstring)."""
    from services.credit.application import CreditApplication
    from services.dunning.application import DunningApplication
    from services.ledger.application import LedgerApplication
    from services.ledger.outbound import StoredTranslator
    from shared.erp_events import InvalidMessage, decode_message
    from shared.eventstore import eventsourcing_env
    from shared.ledger_feed import decode as decode_fact

    book = generate_book(customers=customers, events=events)
    stores = {service: _new_store(kind, service, workdir) for service in SERVICES}
    ledger = LedgerApplication(env=eventsourcing_env(stores["ledger"].url()))
    dunning = DunningApplication(env=eventsourcing_env(stores["dunning"].url()))
    credit = CreditApplication(env=eventsourcing_env(stores["credit"].url()))
    translate = StoredTranslator(ledger)
    position = 0
    try:
        for start in range(0, len(book.messages), LEDGER_BATCH):
            chunk = book.messages[start:start + LEDGER_BATCH]
            inbound, profiles = [], []
            for offset, message in enumerate(chunk, start):
                with contextlib.suppress(InvalidMessage):
                    inbound.append(decode_message(message.value, topic=message.topic, partition=0,
                                                  offset=offset, key=message.key))
                    if message.topic == CUSTOMERS_TOPIC:
                        profiles.append(decode_fact(message.value, topic=CUSTOMERS_TOPIC, partition=0,
                                                    offset=offset, key=message.key))
            batch = ledger.prepare(inbound)
            ledger.commit(batch)
            facts = list(profiles)
            while notifications := ledger.recorder.select_notifications(position + 1, 5000):
                position = notifications[-1].id
                for notification in notifications:
                    for outbound in translate(notification):
                        facts.append(decode_fact(outbound.value, topic="ar.ledger.events",
                                                 key=outbound.key.encode()))
            for app in (dunning, credit):
                prepared = app.prepare(facts)
                app.commit(prepared)
    finally:
        for app in (ledger, dunning, credit):
            app.close()
    if kind == "sqlite":
        for store in stores.values():
            with contextlib.closing(sqlite3.connect(store.name)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return stores


# ---------------------------------------------------------------------------- timing


@dataclass
class Timed:
    service: str
    kind: str
    notifications: int
    seconds: float
    read_seconds: float
    cpu_seconds: float
    digest: str

    @property
    def events_per_second(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0


def _projector(service: str, url: str, engine_url: str) -> tuple[Any, Any, Any]:
    """(application, projector, engine) as the service's followers make them."""
    from shared.db import make_engine, read_models_url
    from shared.eventstore import eventsourcing_env

    env = eventsourcing_env(url, cache_size=None)
    if service == "ledger":
        from services.ledger.application import LedgerApplication
        from services.ledger.read.projections import LedgerProjector
        from services.ledger.read.schema import migrate_read_models

        migrate_read_models(engine_url)
        app: Any = LedgerApplication(env=env)
        engine = make_engine(engine_url, writer=True)
        return app, LedgerProjector(app, engine), engine
    if service == "dunning":
        from services.dunning.application import DunningApplication
        from services.dunning.projections import DunningProjector
        from services.dunning.service import migrate_read_models as migrate_dunning

        migrate_dunning(engine_url)
        app = DunningApplication(env=env)
        engine = make_engine(engine_url, writer=True)
        return app, DunningProjector(app, engine), engine
    from services.credit.application import CreditApplication
    from services.credit.projections import CreditProjector
    from services.credit.service import migrate_read_models as migrate_credit

    migrate_credit(engine_url)
    app = CreditApplication(env=env)
    engine = make_engine(read_models_url(engine_url), writer=True)
    return app, CreditProjector(app, engine), engine


def _read_models(service: str) -> list[Any]:
    if service == "ledger":
        from services.ledger.read.projections import LIVE, positions

        return [*LIVE.tables, positions]
    if service == "dunning":
        from services.dunning.projections import metadata as dunning_metadata

        return list(dunning_metadata.sorted_tables)
    from services.credit.projections import metadata as credit_metadata

    return list(credit_metadata.sorted_tables)


def digest(service: str, engine: Any) -> str:
    """One digest over the read models' rows as the driver returns them, in a total order."""
    sha = hashlib.sha256()
    with engine.connect() as conn:
        for table in _read_models(service):
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            cast = "::text" if conn.dialect.name == "postgresql" else ""  # (no ordering of JSON)
            order = ", ".join(f'"{c.name}"{cast}' for c in table.columns)
            rows = conn.exec_driver_sql(f'SELECT {columns} FROM "{table.name}" ORDER BY {order}').all()
            sha.update(f"{table.name}:{len(rows)}:".encode())
            for row in rows:
                sha.update(repr(tuple(row)).encode())
    return sha.hexdigest()[:16]


def time_projector(store: Store, workdir: Path, profile: bool = False) -> Timed:
    from shared.follower import SharedLog

    name = store.copy(workdir)
    url = store.url(name)
    app, projector, engine = _projector(store.service, url, url)
    try:
        shared_log = SharedLog(app)
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")

        async def run() -> tuple[int, float]:
            position, count, reading = projector.position(), 0, 0.0
            while True:
                began = time.perf_counter()
                notifications = shared_log.read(position + 1, 2000)
                reading += time.perf_counter() - began
                if not notifications:
                    return count, reading
                await projector.process(notifications)
                position = notifications[-1].id
                count += len(notifications)

        cpu, began = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.start()
        count, reading = asyncio.run(run())
        if profiler is not None:
            profiler.stop()
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        if profiler is not None:
            RESULTS.mkdir(parents=True, exist_ok=True)
            path = RESULTS / f"projectors-{store.kind}-{store.service}-{time.strftime('%Y%m%d-%H%M%S')}.html"
            path.write_text(profiler.output_html())
            log(f"profile: {path}")
        return Timed(store.service, store.kind, count, seconds, reading, cpu, digest(store.service, engine))
    finally:
        engine.dispose()
        app.close()
        store.drop(name)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs per projector (the least CPU reported)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    lines = []
    for kind in args.db.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="bench-projectors-"))
        try:
            began = time.perf_counter()
            stores = build(kind, args.customers, args.events, workdir)
            log(f"{kind}: built the stores in {time.perf_counter() - began:.1f}s")
            try:
                for service in args.services.split(","):
                    runs = [time_projector(stores[service], workdir, args.profile)
                            for _ in range(1 if args.profile else args.repeat)]
                    best = min(runs, key=lambda t: t.cpu_seconds)
                    digests = {t.digest for t in runs}
                    load = os.getloadavg()[0]
                    line = (f"{kind:8} {service:8} {best.notifications:7d} events  {best.seconds:6.2f}s  "
                            f"{best.events_per_second:8.0f} ev/s  (log reads {best.read_seconds:5.2f}s, "
                            f"CPU {best.cpu_seconds:6.2f}s, "
                            f"{best.notifications / best.cpu_seconds:6.0f} ev/CPU-s)"
                            f"  digest {best.digest}"
                            f"{'' if len(digests) == 1 else ' DIGESTS DIFFER: ' + ','.join(sorted(digests))}"
                            f"  load {load:.1f}")
                    log(line)
                    lines.append(line)
                    results.append({**asdict(best), "events_per_second": best.events_per_second,
                                    "runs": [t.seconds for t in runs], "load": load})
            finally:
                for store in stores.values():
                    store.drop()
            raw = raw_baseline(kind, 20_000, workdir)
            line = f"{kind:8} raw      {raw['rows']:7d} rows    {raw['seconds']:6.2f}s  " \
                   f"{raw['rows_per_second']:8.0f} rows/s (executemany, 1,000 a commit)"
            log(line)
            lines.append(line)
            results.append({"service": "raw", "kind": kind, **raw})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"projectors-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"customers": args.customers, "events": args.events, "results": results,
                                "loadavg": os.getloadavg()}, indent=2))
    log(f"results: {path}")


if __name__ == "__main__":
    main()
