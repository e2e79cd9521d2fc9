"""Credit review benchmark: the daily review over a large book, with the early-warning rules, next
to raw baselines measured in the same run.

The goal (issue 19): a review over 100,000 customers with the warning rules finishes within
60 s (PostgreSQL; SQLite with ``--db sqlite``).

1. **Build** (timed, not the figure under test) a fresh database holding the credit service's
   event store and read models as the service would have them, written with the application
   (as ``bench.dunning`` builds its book; through Kafka it would take hours):

   - every customer's facts (``ledger.customer_updated`` with an ERP credit limit, invoices
     over the six months before the review, their payments with settled dates, a few
     disputes; outside ratings, some with a downgrade; a few broken promises from dunning) go
     through ``CreditApplication.prepare`` in batches, as the consumer takes them: every fact
     judges the hold and warning rules on its date;
   - then commands on the same accounts: approved (or refused) orders in the 40 days before
     the review (reservations, some expiring at it), securities (bank guarantees, credit
     insurances; some ending within 30 days of the review);
   - then the review of the day before (``CreditAccount.review``), so the timed one is a
     daily review, not the book's first; each batch written with ``CreditApplication.commit``
     (one transaction), two worker processes on PostgreSQL; the past review is recorded in
     the registry;
   - the projector (``CreditProjector.apply``, as ``replay`` does) fills the read models.

   The limits are set from each customer's exposure so that about 10% use 90-99% of it
   (``limit_utilisation``) and 5% exceed it (``limit_exceeded``, unless securities cover it).
   On PostgreSQL the built database is kept as a template; every timed review runs on a copy
   (on SQLite: a copy of the files).
2. **Time** on each copy, with a fresh application (the service's aggregate cache of 50,000,
   cold, as after a restart), ``ReviewRunner.run`` (the code behind ``POST /reviews``, chunks
   of 500 through a ``StoreWriter``) for the review date with the default rules (the seven
   warning signals). Reported: candidates, events they hold, accounts changed, new events by
   kind (warnings raised and cleared among them), wall and CPU seconds (this process; and
   PostgreSQL's), the load average. Then the projector's catch-up on the review's events
   (timed apart: in the service it runs in its own process) and the same date again (must
   change nothing).
3. **Baselines**, on the same copy just before the review: the candidate SELECT alone; a raw
   read of the candidates' stored events (the rows the review loads) in chunks of 500, not
   decoded; and loading the same accounts through the application as the review does
   (``CreditApplication.account`` each, a second cold application), without reviewing.
   With ``--compare`` (default), the same review on another copy with the warning rules left
   out (``warning_rules: []``): what judging the warnings costs.

Usage (from the repository root)::

    python -m bench.credit_review                        # 100,000 customers on PostgreSQL
    python -m bench.credit_review --customers 5000       # a quick iteration
    python -m bench.credit_review --db both --customers 20000
    python -m bench.credit_review --keep                 # keep the built database (name printed)
    python -m bench.credit_review --from-db bench_credit_review_1a2b3c4d   # reuse a kept build

Results (JSON) go to ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import log, project_all, raw_postgres_events

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES_BASE = "postgresql://postgres@127.0.0.1:5432"
AS_OF = date(2026, 6, 30)  # the review under test (a Tuesday)
PREVIOUS = AS_OF - timedelta(days=1)  # the review before it, made in the build
HISTORY_DAYS = 180  # invoices issued over the last six months
BATCH_CUSTOMERS = 100  # customers per prepare/commit transaction in the build
PROJECT_BATCH = 5_000  # notifications per projector transaction (as replay)
RAW_CHUNK = 500  # accounts per raw read query (the review's chunk)
_CURRENCIES = (("EUR", 0.85), ("USD", 0.1), ("GBP", 0.05))
# payment behaviour: share, days after the due date a payment comes (min, max), share left unpaid
_PAYERS = (("punctual", 0.6, (-20, 0), 0.0), ("slow", 0.3, (1, 25), 0.02), ("bad", 0.1, (10, 60), 0.3))


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


# ---------------------------------------------------------------------------- the book


@dataclass
class Customer:
    """One customer's facts (in the order the feeds bring them) and the commands made on its account."""

    customer_id: str
    currency: str
    facts: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # (type, data, message id)
    orders: list[tuple[str, str, date]] = field(default_factory=list)  # (order id, amount, checked on)
    securities: list[dict[str, Any]] = field(default_factory=list)  # security_record's arguments


def customer_book(seed: int, index: int, mean_invoices: float) -> Customer:
    """One customer of the book (see the module's docstring)."""
    rng = random.Random(f"{seed}:{index}")
    customer_id = f"CRED-{index:06d}"
    currency = _pick(rng, _CURRENCIES)
    customer = Customer(customer_id, currency)
    _, _, (late_min, late_max), unpaid = rng.choices(_PAYERS, [p[1] for p in _PAYERS])[0]
    count = max(1, min(400, round(rng.lognormvariate(math.log(mean_invoices) - 0.32, 0.8))))
    scale = rng.lognormvariate(math.log(600), 1.0)  # the customer's typical invoice
    terms = rng.choice((14, 30, 30, 30, 60))
    ledger: list[tuple[date, int, str, dict[str, Any]]] = []  # (effective date, order, type, data)
    open_amount = Decimal(0)
    for number in range(count):
        issued = AS_OF - timedelta(days=rng.randrange(1, HISTORY_DAYS))
        due = issued + timedelta(days=terms)
        amount = Decimal(f"{max(1.0, rng.lognormvariate(math.log(scale), 0.5)):.2f}")
        invoice_id = f"INV-{index:06d}-{number:04d}"
        ledger.append((issued, 0, "ledger.invoice_opened", {
            "customer_id": customer_id, "invoice_id": invoice_id, "currency": currency,
            "amount": str(amount), "issue_date": issued.isoformat(), "due_date": due.isoformat(),
            "effective_date": issued.isoformat(),
            "invoices": [{"invoice_id": invoice_id, "open_amount": str(amount), "status": "open"}]}))
        paid_on = due + timedelta(days=rng.randint(late_min, late_max))
        paid_on = max(paid_on, issued + timedelta(days=1))
        if paid_on <= PREVIOUS and rng.random() >= unpaid:
            ledger.append((paid_on, 1, "ledger.payment_applied", {
                "customer_id": customer_id, "currency": currency, "amount": str(amount),
                "effective_date": paid_on.isoformat(),
                "invoices": [{"invoice_id": invoice_id, "open_amount": "0.00", "status": "paid",
                              "settled_date": paid_on.isoformat()}]}))
            continue
        open_amount += amount
        if rng.random() < 0.02:
            disputed_on = min(PREVIOUS, issued + timedelta(days=rng.randrange(5, 30)))
            ledger.append((disputed_on, 2, "ledger.invoice_disputed", {
                "customer_id": customer_id, "dispute_id": f"DSP-{index:06d}-{number:04d}",
                "invoice_id": invoice_id, "amount": f"{amount * Decimal('0.5'):.2f}",
                "effective_date": disputed_on.isoformat()}))
    ledger.sort(key=lambda entry: (entry[0], entry[1]))
    # the orders of the last 40 days (reservations; those checked 31 days before the review expire at it)
    orders = [(f"ORD-{index:06d}-{n}", f"{scale * rng.uniform(0.5, 2):.2f}",
               AS_OF - timedelta(days=rng.randrange(2, 41))) for n in range(rng.choice((0, 0, 1, 1, 2, 3)))]
    customer.orders = sorted(orders, key=lambda o: o[2])
    # the limit, from the exposure at the end: most use 20-85% of it, 10% 90-99%, 5% more than all
    exposure = open_amount + sum((Decimal(amount) for _, amount, _ in orders), Decimal(0))
    roll = rng.random()
    used = rng.uniform(0.9, 0.99) if roll < 0.1 else rng.uniform(1.02, 1.3) if roll < 0.15 else rng.uniform(
        0.2, 0.85)
    limit = max(Decimal(1000), (exposure / Decimal(f"{used:.4f}")).quantize(Decimal(100)))
    profile = {"customer_id": customer_id, "name": f"Customer {index} Ltd", "country": "DE",
               "credit_limit": {"currency": currency, "amount": f"{limit:.2f}"}}
    account = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-ledger:{customer_id}")
    for version, (_, _, event_type, data) in enumerate([(AS_OF, 0, "ledger.customer_updated", profile),
                                                        *ledger], start=1):
        customer.facts.append((event_type, data, f"ledger:{account}:{version}:0"))
    # outside ratings (40%): one report in the last year, a second for a fifth of them (half worse)
    if rng.random() < 0.4:
        first = AS_OF - timedelta(days=rng.randrange(100, 365))
        reports = [(first, rng.uniform(0.005, 0.05))]
        if rng.random() < 0.2:
            change = rng.uniform(1.5, 3) if rng.random() < 0.5 else rng.uniform(0.5, 0.9)  # half worse
            reports.append((first + timedelta(days=rng.randrange(30, 90)), reports[0][1] * change))
        for n, (reported, pd) in enumerate(reports):
            customer.facts.append(("rating.reported", {
                "customer_id": customer_id, "provider": "bench-bureau", "score": str(round(100 - 400 * pd)),
                "grade": "BBB" if pd < 0.02 else "BB" if pd < 0.05 else "B",
                "probability_of_default": f"{min(pd, 0.99):.4f}", "report_date": reported.isoformat()},
                f"rating:{customer_id}:{n}"))
    # a broken promise to pay (3%), in the last 90 days
    if rng.random() < 0.03:
        paused = AS_OF - timedelta(days=rng.randrange(3, 90))
        customer.facts.append(("dunning.resumed", {
            "customer_id": customer_id, "promise_id": f"PR-{index:06d}", "reason": "promise_broken",
            "status": "broken", "paused_until": paused.isoformat()}, f"dunning:{customer_id}:1"))
    # securities: a bank guarantee (30%), a credit insurance (15%); 3% end within 30 days of the review
    if rng.random() < 0.3:
        roll = rng.random()
        until = (AS_OF + timedelta(days=30) if roll < 0.03 else AS_OF + timedelta(days=rng.randrange(1, 30))
                 if roll < 0.1 else date(2027, 12, 31))
        customer.securities.append({"security_id": f"BG-{index:06d}", "kind": "bank_guarantee",
                                    "amount": (limit * Decimal(f"{rng.uniform(0.1, 0.4):.2f}")).quantize(
                                        Decimal(1)), "coverage_percent": None, "valid_until": until})
    if rng.random() < 0.15:
        customer.securities.append({"security_id": f"CI-{index:06d}", "kind": "credit_insurance",
                                    "amount": (limit * Decimal("0.5")).quantize(Decimal(1)),
                                    "coverage_percent": Decimal(rng.choice((60, 75, 90))),
                                    "valid_until": None})
    return customer


# ---------------------------------------------------------------------------- databases


@dataclass
class Store:
    """A built (or copied) credit database: PostgreSQL (``name``) or SQLite (``path``, with its
    read models' file beside it)."""

    kind: str
    name: str  # PostgreSQL database name, or the SQLite event store's path

    @property
    def url(self) -> str:
        if self.kind == "postgres":
            return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"
        return f"sqlite:///{self.name}"

    @property
    def files(self) -> list[Path]:
        from shared.db import read_models_url

        models = read_models_url(self.url).removeprefix("sqlite:///")
        return [Path(base + suffix) for base in (self.name, models) for suffix in ("", "-wal", "-shm")]

    def copy(self, label: str) -> Store:
        if self.kind == "postgres":
            import psycopg

            name = f"{self.name}_{label}_{uuid.uuid4().hex[:4]}"
            with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
            return Store("postgres", name)
        path = str(Path(self.name).with_name(f"{Path(self.name).stem}-{label}.db"))
        copy = Store("sqlite", path)
        for source, target in zip(self.files, copy.files, strict=True):
            if source.exists():
                shutil.copyfile(source, target)
        return copy

    def drop(self) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            for path in self.files:
                path.unlink(missing_ok=True)

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Rows of one query against the event store."""
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(f"{POSTGRES_BASE}/{self.name}") as conn:
                return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        with contextlib.closing(sqlite3.connect(self.name, timeout=30)) as conn:
            return list(conn.execute(sql, params).fetchall())

    @property
    def events_table(self) -> str:
        return "credit_events" if self.kind == "postgres" else "stored_events"

    @property
    def nid(self) -> str:
        return "notification_id" if self.kind == "postgres" else "rowid"

    def max_nid(self) -> int:
        return int(self.query(f"SELECT COALESCE(MAX({self.nid}), 0) FROM {self.events_table}")[0][0])


def new_store(kind: str, workdir: Path) -> Store:
    name = f"bench_credit_review_{uuid.uuid4().hex[:8]}"
    if kind == "postgres":
        import psycopg

        with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return Store("postgres", name)
    return Store("sqlite", str(workdir / f"{name}.db"))


# ---------------------------------------------------------------------------- build


def build_worker(url: str, batches: list[tuple[int, int]], seed: int, mean_invoices: float) -> dict[str, Any]:
    """Take in, command, review (the day before) and commit these batches of customers."""
    from services.credit.application import CreditApplication
    from services.credit.domain.securities import security_record
    from shared.eventstore import eventsourcing_env
    from shared.ledger_feed import read_fact
    from shared.runtime import tune_gc

    tune_gc()
    app = CreditApplication(env=eventsourcing_env(url, cache_size=None))
    rules = app.rules
    totals: Counter[str] = Counter()
    cpu: defaultdict[str, float] = defaultdict(float)
    try:
        for start, stop in batches:
            began = time.process_time()
            book = [customer_book(seed, index, mean_invoices) for index in range(start, stop)]
            messages = [read_fact(event_type, data, message_id, source="bench/credit-review",
                                  topic="ar.ledger.events", partition=0)
                        for customer in book for event_type, data, message_id in customer.facts]
            cpu["generate"] += time.process_time() - began
            began = time.process_time()
            batch = app.prepare(messages)
            cpu["prepare"] += time.process_time() - began
            began = time.process_time()
            for customer in book:
                account = batch.accounts[customer.customer_id]
                for order_id, amount, on in customer.orders:
                    answer = account.check(order_id, Decimal(amount), customer.currency, on, rules)
                    totals[f"orders_{answer['decision']}"] += 1
                for security in customer.securities:
                    record = security_record(currency=customer.currency, valid_from=date(2025, 1, 1),
                                             issuer="Bench Bank", reference=None, note=None, **security)
                    account.register_security(record, "bench", PREVIOUS, rules)
                    totals[security["kind"]] += 1
                account.review(PREVIOUS, rules)
            cpu["commands_and_past_review"] += time.process_time() - began
            began = time.process_time()
            app.commit(batch)
            cpu["commit"] += time.process_time() - began
            totals["facts"] += len(messages)
            totals["events"] += batch.stored_events
            totals["refused"] += len(batch.refusals)
    finally:
        app.close()
    return {"totals": dict(totals), "cpu": dict(cpu)}


def build(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    from services.credit.application import CreditApplication
    from services.credit.projections import CreditProjector
    from services.credit.service import migrate_read_models
    from shared.db import make_engine, read_models_url
    from shared.eventstore import eventsourcing_env

    url = store.url
    migrate_read_models(url)
    CreditApplication(env=eventsourcing_env(url, cache_size=None)).close()  # the event tables, once
    spans = [(s, min(s + BATCH_CUSTOMERS, args.customers)) for s in range(0, args.customers, BATCH_CUSTOMERS)]
    workers = args.workers if store.kind == "postgres" else 1  # (SQLite: one writer at a time)
    shares = [spans[w::workers] for w in range(workers)]
    log(f"build ({store.kind}): {args.customers:,} customers in {len(spans)} batches, {workers} process(es)")
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        outcomes = list(pool.map(build_worker, [url] * workers, shares, [args.seed] * workers,
                                 [args.mean_invoices] * workers))
    stored_seconds = time.perf_counter() - started
    totals: Counter[str] = Counter()
    cpu: defaultdict[str, float] = defaultdict(float)
    for outcome in outcomes:
        totals.update(outcome["totals"])
        for step, seconds in outcome["cpu"].items():
            cpu[step] += seconds
    log(f"build: {totals['facts']:,} facts -> {totals['events']:,} events stored in {stored_seconds:.1f}s "
        f"({dict(totals)}); worker CPU s: {', '.join(f'{k} {v:.0f}' for k, v in cpu.items())}")
    app = CreditApplication(env=eventsourcing_env(url, cache_size=None))
    engine = make_engine(read_models_url(url), writer=True)
    try:
        app.record_review(PREVIOUS, {"customers": args.customers})
        projected, projected_seconds = project_all(app, CreditProjector(app, engine), PROJECT_BATCH)
    finally:
        engine.dispose()
        app.close()
    log(f"build: projected {projected:,} events in {projected_seconds:.1f}s")
    if store.kind == "postgres":
        import psycopg

        with psycopg.connect(f"{POSTGRES_BASE}/{store.name}", autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # (autovacuum is off on this server)
    return {"facts": totals["facts"], "events": totals["events"], "totals": dict(totals),
            "store_seconds": stored_seconds, "project_seconds": projected_seconds, "projected": projected,
            "worker_cpu_seconds": dict(cpu)}


def describe_book(store: Store) -> dict[str, Any]:
    from shared.db import read_models_url

    def rows(sql: str) -> list[tuple[Any, ...]]:
        if store.kind == "postgres":
            return store.query(sql)
        path = read_models_url(store.url).removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return list(conn.execute(sql).fetchall())

    def models(sql: str) -> int:
        return int(rows(sql)[0][0])

    return {
        "customers": models("SELECT count(*) FROM credit_accounts"),
        "stored_events": int(store.query(f"SELECT count(*) FROM {store.events_table}")[0][0]),
        "open_warnings": models("SELECT count(*) FROM credit_warnings WHERE status = 'open'"),
        "active_holds": models("SELECT count(*) FROM credit_holds WHERE status = 'active'"),
        "securities": models("SELECT count(*) FROM credit_securities"),
        "open_warnings_by_signal": dict(rows(
            "SELECT signal, count(*) FROM credit_warnings WHERE status = 'open' GROUP BY signal ORDER BY 1")),
    }


# ---------------------------------------------------------------------------- timed review


@dataclass
class Timed:
    label: str
    as_of: str
    warnings: bool
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    candidates: int = 0
    candidate_events: int = 0
    customers: int = 0
    summary: dict[str, int] = field(default_factory=dict)
    new_events: dict[str, int] = field(default_factory=dict)  # by event class
    project_seconds: float = 0.0
    repeat_seconds: float = 0.0
    repeat_new_events: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    baselines: dict[str, float] = field(default_factory=dict)


def _raw_read(store: Store, customer_ids: list[str], upto: int) -> tuple[int, float]:
    """The candidates' stored events (bytes, not decoded), ``RAW_CHUNK`` accounts a query."""
    from services.credit.domain import credit_account_id

    ids = [credit_account_id(c) for c in customer_ids]
    rows = 0
    if store.kind == "postgres":
        return raw_postgres_events(store.name, "credit_events", ids, upto, RAW_CHUNK)
    with contextlib.closing(sqlite3.connect(store.name, timeout=30)) as conn:
        started = time.perf_counter()
        for start in range(0, len(ids), RAW_CHUNK):
            chunk = [i.hex for i in ids[start:start + RAW_CHUNK]]
            marks = ",".join("?" * len(chunk))
            rows += len(conn.execute(
                f"SELECT originator_id, originator_version, topic, state FROM stored_events "
                f"WHERE originator_id IN ({marks}) AND rowid <= ? ORDER BY originator_id, originator_version",
                [*chunk, upto]).fetchall())
        return rows, time.perf_counter() - started


def _load_only(url: str, customer_ids: list[str]) -> float:
    """The candidates' accounts loaded as the review loads them (one ``account`` each, a cold
    application with the service's cache), nothing reviewed."""
    from services.credit.application import CreditApplication
    from shared.eventstore import eventsourcing_env

    app = CreditApplication(env=eventsourcing_env(url))
    try:
        started = time.perf_counter()
        for start in range(0, len(customer_ids), RAW_CHUNK):
            app.load_accounts(customer_ids[start:start + RAW_CHUNK])
        return time.perf_counter() - started
    finally:
        app.close()


def _new_events(store: Store, after: int) -> dict[str, int]:
    rows = store.query(f"SELECT topic, count(*) FROM {store.events_table} WHERE {store.nid} > ? "
                       "GROUP BY topic", (after,))
    return dict(sorted(((str(topic).rsplit(".", 1)[-1], int(n)) for topic, n in rows), key=lambda kv: -kv[1]))


def timed_review(store: Store, args: argparse.Namespace, *, warnings: bool, baselines: bool) -> Timed:
    """``ReviewRunner.run(AS_OF)`` on ``store`` (a copy), with or without the warning rules."""
    from bench.common import postgres_cpu_seconds, postgres_cpu_since
    from services.credit import queries
    from services.credit.application import CreditApplication
    from services.credit.domain import default_rules
    from services.credit.projections import CreditProjector
    from services.credit.reviews import ReviewRunner
    from shared.db import make_engine, read_models_url
    from shared.eventstore import eventsourcing_env
    from shared.runtime import tune_gc
    from shared.store_writer import StoreWriter

    rules = default_rules() if warnings else default_rules().model_copy(update={"warning_rules": ()})
    url = store.url
    engine = make_engine(read_models_url(url))
    timed = Timed("review" if warnings else "no warnings", AS_OF.isoformat(), warnings)
    before = store.max_nid()
    if baselines:
        started = time.perf_counter()
        with engine.connect() as conn:
            ids = list(queries.review_candidates(conn))
        timed.baselines["select_candidates_seconds"] = time.perf_counter() - started
        rows, seconds = _raw_read(store, ids, before)
        timed.candidate_events = rows
        timed.baselines |= {"raw_read_seconds": seconds, "raw_rows_per_second": rows / seconds}
        selected = timed.baselines["select_candidates_seconds"]
        log(f"  baseline: {len(ids):,} candidates selected in {selected:.2f}s, their {rows:,} stored "
            f"events read raw in {seconds:.2f}s")
        timed.baselines["load_only_seconds"] = _load_only(url, ids)
        log(f"  baseline: the same accounts loaded through the application (not reviewed) in "
            f"{timed.baselines['load_only_seconds']:.2f}s")
    app = CreditApplication(env=eventsourcing_env(url), rules=rules)  # as the service: cache of 50,000, cold
    tune_gc()
    gc.collect()

    async def main() -> None:
        runner = ReviewRunner(app, engine, StoreWriter())
        timed.load_before = os.getloadavg()
        pg_started = postgres_cpu_seconds() if store.kind == "postgres" else {}
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await runner.run(AS_OF)
        timed.seconds = time.perf_counter() - started
        timed.cpu_seconds = time.process_time() - cpu_started
        timed.postgres_cpu_seconds = postgres_cpu_since(pg_started) if store.kind == "postgres" else 0.0
        timed.load_after = os.getloadavg()
        if result.get("repeat"):
            raise SystemExit(f"{AS_OF} was reviewed before on {store.name}")
        timed.candidates = int(result["candidates"])
        timed.customers = int(result["customers"])
        timed.summary = {k: v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}
        timed.new_events = await asyncio.to_thread(_new_events, store, before)
        started = time.perf_counter()
        models = make_engine(read_models_url(url), writer=True)
        try:
            projector = CreditProjector(app, models)
            position = projector.position()
            while notifications := app.recorder.select_notifications(position + 1, PROJECT_BATCH):
                projector.apply(notifications)
                position = notifications[-1].id
        finally:
            models.dispose()
        timed.project_seconds = time.perf_counter() - started
        after = store.max_nid()
        started = time.perf_counter()
        again = await runner.run(AS_OF)
        timed.repeat_seconds = time.perf_counter() - started
        timed.repeat_new_events = store.max_nid() - after
        if not again.get("repeat") or timed.repeat_new_events:
            raise SystemExit(f"the same date again changed something: {again}")

    try:
        asyncio.run(main())
    finally:
        engine.dispose()
        app.close()
    return timed


# ---------------------------------------------------------------------------- report


def report(kind: str, book: dict[str, Any], runs: list[Timed], build_info: dict[str, Any] | None) -> str:
    lines = [f"{kind}: book of {book['customers']:,} customers, {book['stored_events']:,} stored events, "
             f"{book['securities']:,} securities, {book['open_warnings']:,} open warnings "
             f"({book['open_warnings_by_signal']}) and "
             f"{book['active_holds']:,} active holds before the review of {AS_OF} (reviewed {PREVIOUS})"]
    if build_info:
        lines.append(f"build (not under test): {build_info['events']:,} events stored in "
                     f"{build_info['store_seconds']:.0f}s, projected in {build_info['project_seconds']:.0f}s")
    for t in runs:
        base = t.baselines
        raised, cleared = t.new_events.get("WarningRaised", 0), t.new_events.get("WarningCleared", 0)
        lines.append(
            f"  {t.label:<12} {t.candidates:,} candidates"
            f"{f' ({t.candidate_events:,} events)' if t.candidate_events else ''}, "
            f"{t.customers:,} changed, {sum(t.new_events.values()):,} new events ({raised:,} warnings "
            f"raised, {cleared:,} cleared): {t.seconds:.1f}s wall, {t.cpu_seconds:.1f} CPU s here + "
            f"{t.postgres_cpu_seconds:.1f} PostgreSQL; load {t.load_before[0]:.2f}->{t.load_after[0]:.2f}; "
            f"projected after in {t.project_seconds:.1f}s; again {t.repeat_seconds:.2f}s, "
            f"{t.repeat_new_events} events")
        if base:
            raw, loaded = base["raw_read_seconds"], base["load_only_seconds"]
            lines.append(
                f"    baselines: candidate SELECT {base['select_candidates_seconds']:.2f}s; raw read of "
                f"their events {raw:.2f}s ({base['raw_rows_per_second']:,.0f} rows/s): the review took "
                f"{t.seconds / raw:.1f}x; the accounts loaded, not reviewed, {loaded:.1f}s "
                f"(the review {t.seconds / loaded:.2f}x)")
        lines.append(f"    new events: {t.new_events}")
    with_rules = [t.seconds for t in runs if t.warnings]
    if with_rules:
        met = max(with_rules) <= 60 and book["customers"] >= 100_000
        lines.append(f"  goal (<= 60 s over >= 100,000 customers with the warning rules): "
                     f"{'met' if met else 'NOT met'} ({max(with_rules):.1f}s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--mean-invoices", type=float, default=10.0,
                        help="invoices per customer over six months (most paid, the rest open)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="build processes (PostgreSQL)")
    parser.add_argument("--repeat", type=int, default=1, help="timed reviews, each on a fresh copy")
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                        help="also the same review without the warning rules, on another copy")
    parser.add_argument("--keep", action="store_true", help="keep the built database (PostgreSQL)")
    parser.add_argument("--from-db", help="a PostgreSQL database built before with --keep: skip the build")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="bench-credit-review-"))
    texts, results = [], {}
    try:
        for kind in (("postgres", "sqlite") if args.db == "both" else (args.db,)):
            reuse = args.from_db if kind == "postgres" else None
            base = Store("postgres", reuse) if reuse else new_store(kind, workdir)
            build_info = None
            try:
                if not reuse:
                    log(f"building {base.name}")
                    build_info = build(base, args)
                book = describe_book(base)
                log(f"book ({kind}): {book}")
                runs: list[Timed] = []
                plan = [True] * args.repeat + ([False] if args.compare else [])
                for number, warnings in enumerate(plan):
                    copy = base.copy(f"r{number}")
                    try:
                        rules = "default rules" if warnings else "no warning rules"
                        log(f"review {number + 1}/{len(plan)} on {copy.name} ({rules}), "
                            f"load {os.getloadavg()}")
                        timed = timed_review(copy, args, warnings=warnings, baselines=warnings)
                        log(f"  {timed.label}: {timed.candidates:,} candidates, {timed.customers:,} changed, "
                            f"{sum(timed.new_events.values()):,} new events in {timed.seconds:.1f}s "
                            f"(load {timed.load_before[0]:.2f}->{timed.load_after[0]:.2f})")
                        runs.append(timed)
                    finally:
                        copy.drop()
                texts.append(report(kind, book, runs, build_info))
                results[kind] = {"book": book, "build": build_info, "runs": [t.__dict__ for t in runs]}
            finally:
                if args.keep and kind == "postgres":
                    log(f"kept: {base.name}")
                elif not reuse:
                    base.drop()
        print("\n" + "\n".join(texts))
        out = RESULTS / f"{stamp}-credit-review.json"
        out.write_text(json.dumps({"args": vars(args), **results}, indent=2, default=str))
        log(f"results in {out.relative_to(ROOT)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
