"""Read-side benchmark: query latencies and replay rate on a big ledger book in PostgreSQL.

Stages (``--stage all`` runs them in order; each can run alone on a kept database):

1. **build**: a synthetic book (``bench/book.py``: by default 100,000 customers and
   2,400,000 messages, of which about 1,020,000 invoices) goes through the real
   ``LedgerApplication`` in batches of 5,000 messages (decode, domain, one event-store
   transaction per batch), into a PostgreSQL database of its own. No Kafka: what it costs
   to consume is measured by ``bench/ingest.py``; here only the stored events matter, and
   they are exactly what the service would store.
   The build adds one heavy customer (``CUST-HEAVY``: 2,500 invoices over the book's year,
   each paid by an allocated payment, spread through the book by business date), whose
   statement of account the queries stage measures.
2. **replay**: the read models are built from the event store by ``receivables replay``'s
   own code (``services.ledger.replay``: shadow tables, then the switch), so they are what
   the projector produces. Measured: the replay's events/s, next to the raw read rate of
   the same notifications (``select_notifications`` over the whole log in batches, decoding
   nothing, and decoding each into a domain event).
3. **queries**: p50/p99 latency (wall, one connection, as the REST handlers run them) of
   whole-book aging by currency (as of today and as of a past date), aging by customer
   with a page of 100 (first and a later page), one customer's balance, one invoice, and the
   heavy customer's statement of account for its last month and for its whole year, each
   next to its raw baseline: the same customer's movements fetched with plain psycopg,
   nothing computed (the rows of the period, and every row up to its end).

Usage (PostgreSQL on 127.0.0.1:5432, user ``postgres``, trust auth)::

    python -m bench.queries                                   # build + replay + queries, keeps the database
    python -m bench.queries --stage queries --database bench_queries_book
    python -m bench.queries --stage statement --database bench_queries_book
    python -m bench.queries --customers 2000 --events 50000 --database bench_queries_small

Results go to ``bench/results/queries-<stamp>.json`` and are summarised in
``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.book import (
    CUSTOMERS_TOPIC,
    EPOCH,
    INVOICES_TOPIC,
    ISSUE_DAYS,
    PAYMENTS_TOPIC,
    SOURCE,
    Message,
    describe,
    generate_book,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES_BASE = "postgresql://postgres@127.0.0.1:5432"
BUILD_BATCH = 5_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_url(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def create_database(name: str, *, replace: bool) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_BASE}/postgres", autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not replace:
            raise SystemExit(f"database {name} exists; pass --replace to build it again")
        if exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# ---------------------------------------------------------------------------- build

HEAVY_CUSTOMER = "CUST-HEAVY"
HEAVY_INVOICES = 2_500


def heavy_customer(seed: int) -> list[tuple[str, Message]]:
    """One customer's book, (business date, message) in date order, deterministic for ``seed``:
    2,500 EUR invoices issued evenly over the book's year, each paid in full by a payment
    allocated to it 10 to 59 days later. 5,001 messages, 7,500 movements (a payment is received,
    then applied to its invoice), of which 5,000 move the balance: a line each on a statement."""
    rng = random.Random(f"heavy-{seed}")
    dated: list[tuple[int, int, Message]] = []

    def emit(day: int, kind: str, topic: str, data: dict[str, Any]) -> None:
        when = (EPOCH + timedelta(days=day)).isoformat()
        envelope = {"specversion": "1.0", "id": f"bench-heavy-{seed}-{len(dated):05d}", "source": SOURCE,
                    "type": kind, "time": f"{when}T12:00:00Z", "subject": HEAVY_CUSTOMER,
                    "data": {"customer_id": HEAVY_CUSTOMER, **data}}
        dated.append((day, len(dated), Message(topic, HEAVY_CUSTOMER.encode(), orjson.dumps(envelope), kind)))

    def iso(day: int) -> str:
        return (EPOCH + timedelta(days=day)).isoformat()

    emit(0, "customer.upserted", CUSTOMERS_TOPIC, {"name": "Heavy Customer GmbH", "country": "DE"})
    for number in range(HEAVY_INVOICES):
        issued = number * ISSUE_DAYS // HEAVY_INVOICES
        cents = rng.randrange(10_000, 500_000)
        amount = f"{cents // 100}.{cents % 100:02d}"
        invoice_id = f"INV-HEAVY-{number:05d}"
        emit(issued, "invoice.issued", INVOICES_TOPIC, {
            "invoice_id": invoice_id, "issue_date": iso(issued), "due_date": iso(issued + 30),
            "currency": "EUR", "amount": amount,
        })
        paid = issued + rng.randrange(10, 60)
        emit(paid, "payment.received", PAYMENTS_TOPIC, {
            "payment_id": f"PAY-HEAVY-{number:05d}", "currency": "EUR", "amount": amount,
            "received_date": iso(paid), "allocations": [{"invoice_id": invoice_id, "amount": amount}],
        })
    dated.sort(key=lambda item: item[:2])
    return [(iso(day), message) for day, _, message in dated]


def with_heavy_customer(messages: list[Message], seed: int) -> list[Message]:
    """The book's messages with the heavy customer's merged in by business date, so that its
    movements lie among everyone else's in the tables, as a real customer's would, rather than
    in one block at the end (which an index scan would read from a handful of pages)."""

    def dated(messages: list[Message]) -> Iterator[tuple[str, Message]]:
        day = ""
        for message in messages:  # the book is in business-date order; its envelopes say the date
            start = message.value.find(b'"time":"')
            if start >= 0:
                day = message.value[start + 8:start + 18].decode()
            yield day, message  # an invalid message (not JSON) keeps the date before it

    merged = heapq.merge(dated(messages), heavy_customer(seed), key=lambda item: item[0])
    return [message for _, message in merged]


def build(url: str, customers: int, events: int, seed: int) -> dict[str, Any]:
    """Feed the synthetic book, with the heavy customer, through the ledger application into
    the event store."""
    from services.ledger.application import LedgerApplication
    from services.ledger.read.schema import migrate_read_models
    from shared.erp_events import InvalidMessage, decode_message
    from shared.eventstore import eventsourcing_env
    from shared.runtime import tune_gc

    tune_gc()
    started = time.perf_counter()
    book = generate_book(customers, events, seed)
    generated = time.perf_counter() - started
    log(f"generated in {generated:.0f}s: {describe(book)}")
    messages = with_heavy_customer(book.messages, seed)
    log(f"with {HEAVY_CUSTOMER}: {len(messages) - len(book.messages):,} messages more")
    migrate_read_models(url)
    app = LedgerApplication(env=eventsourcing_env(url, cache_size=customers * 2))
    offsets: dict[str, int] = {}
    stored = refused = invalid = duplicates = 0
    started = time.perf_counter()
    try:
        for start in range(0, len(messages), BUILD_BATCH):
            decoded = []
            for message in messages[start:start + BUILD_BATCH]:
                offset = offsets[message.topic] = offsets.get(message.topic, -1) + 1
                try:
                    decoded.append(decode_message(message.value, topic=message.topic, partition=0,
                                                  offset=offset, key=message.key))
                except InvalidMessage:
                    invalid += 1
            batch = app.prepare(decoded)
            app.commit(batch)
            stored += batch.stored_events
            refused += len(batch.refusals)
            duplicates += batch.duplicates
            done = start + BUILD_BATCH
            if (done // BUILD_BATCH) % 50 == 0:
                elapsed = time.perf_counter() - started
                log(f"build: {min(done, len(messages)):,} messages, {stored:,} events, "
                    f"{done / elapsed:,.0f} msg/s")
    finally:
        app.close()
    seconds = time.perf_counter() - started
    result = {"messages": len(messages), "customers": customers, "seed": seed,
              "heavy_customer_messages": len(messages) - len(book.messages),
              "invoices_issued": book.counts["invoice.issued"], "stored_events": stored,
              "refused": refused, "invalid": invalid, "duplicates": duplicates,
              "seconds": round(seconds, 1), "messages_per_second": round(len(messages) / seconds)}
    log(f"build: {result}")
    return result


# ---------------------------------------------------------------------------- replay


def read_rates(url: str, batch: int) -> dict[str, Any]:
    """The raw read rate of the whole notification log: decoding nothing, the projector's own
    decoding (state only), and the library's domain events."""
    from services.ledger.application import LedgerApplication
    from services.ledger.read.projections import EventDecoder
    from shared.eventstore import eventsourcing_env
    from shared.runtime import tune_gc

    tune_gc()  # as the service and the replay run
    app = LedgerApplication(env=eventsourcing_env(url, cache_size=None))
    decode = EventDecoder(app)
    rates: dict[str, Any] = {}
    try:
        for label, work in (("raw", None), ("state", decode),
                            ("domain_events", lambda ns: [app.mapper.to_domain_event(n) for n in ns])):
            position = count = 0
            started, cpu = time.perf_counter(), time.process_time()
            while notifications := app.recorder.select_notifications(position + 1, batch):
                if work is not None:
                    work(notifications)
                position = notifications[-1].id
                count += len(notifications)
            seconds = time.perf_counter() - started
            rates[label] = {"events": count, "seconds": round(seconds, 1),
                            "events_per_second": round(count / seconds),
                            "cpu_us_per_event": round((time.process_time() - cpu) / count * 1e6, 1)}
            log(f"read the log ({label}): {rates[label]}")
    finally:
        app.close()
    return rates


def project_live(url: str, batch: int) -> dict[str, Any]:
    """The live projector's way (``LedgerProjector.apply``, batches of ``batch``), from empty."""
    from services.ledger.application import LedgerApplication
    from services.ledger.read.projections import LIVE, LedgerProjector, positions
    from shared.db import make_engine
    from shared.eventstore import eventsourcing_env
    from shared.runtime import tune_gc

    tune_gc()
    app = LedgerApplication(env=eventsourcing_env(url, cache_size=None))
    engine = make_engine(url, writer=True)
    with engine.begin() as conn:  # from empty read models
        for table in (*LIVE.tables, positions):
            conn.execute(table.delete())
    projector = LedgerProjector(app, engine)
    position = projector.position()
    count = 0
    started, cpu = time.perf_counter(), time.process_time()
    try:
        while notifications := app.recorder.select_notifications(position + 1, batch):
            projector.apply(notifications)
            position = notifications[-1].id
            count += len(notifications)
    finally:
        engine.dispose()
        app.close()
    seconds = time.perf_counter() - started
    result = {"events": count, "batch": batch, "seconds": round(seconds, 1),
              "events_per_second": round(count / seconds) if seconds else None,
              "cpu_us_per_event": round((time.process_time() - cpu) / max(count, 1) * 1e6, 1)}
    log(f"live projector: {result}")
    return result


def replay(url: str, verify: bool) -> dict[str, Any]:
    """``receivables replay ledger [--verify]``'s own code: shadow tables, build, switch."""
    from services.ledger.application import LedgerApplication
    from services.ledger.replay.online import OnlineReplay, print_progress
    from shared.db import make_engine
    from shared.eventstore import eventsourcing_env
    from shared.runtime import tune_gc

    tune_gc()
    app = LedgerApplication(env=eventsourcing_env(url, cache_size=None))
    engine = make_engine(url, writer=True)
    cpu = time.process_time()
    try:
        result = OnlineReplay(app, engine, progress=print_progress).run(verify=verify)
    finally:
        engine.dispose()
        app.close()
    print(file=sys.stderr)
    summary = {"events": result.events, "seconds": round(result.seconds, 1),
               "build_seconds": round(result.build_seconds, 1),
               "switch_seconds": round(result.switch_seconds, 2), "verified": result.verified,
               "events_per_second_build": round(result.events / result.build_seconds),
               "events_per_second_total": round(result.events / result.seconds),
               "cpu_us_per_event": round((time.process_time() - cpu) / result.events * 1e6, 1)}
    log(f"replay: {summary}")
    return summary


# ---------------------------------------------------------------------------- queries


def _latencies(call: Callable[[], Any], runs: int) -> dict[str, Any]:
    call()  # warm: plans and caches as a serving process has them
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return {"runs": runs, "p50_ms": round(statistics.median(times) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2), "max_ms": round(times[-1] * 1000, 2)}


def queries(url: str, runs: int, seed: int) -> dict[str, Any]:
    """p50/p99 of the read paths, each as its REST handler runs it (a pooled connection per call)."""
    from sqlalchemy import func, select

    from services.ledger.read import queries as reads
    from services.ledger.read.aging import GroupBy, aging
    from services.ledger.read.projections import customers, invoices, movements
    from shared.db import make_engine

    engine = make_engine(url)
    rng = random.Random(seed)
    today = date.today()
    with engine.connect() as conn:
        customer_ids = list(conn.execute(select(customers.c.customer_id).order_by(customers.c.customer_id))
                            .scalars())
        invoice_count = conn.execute(select(func.count()).select_from(invoices)).scalar_one()
        invoice_ids = list(conn.execute(select(invoices.c.invoice_id).order_by(func.random()).limit(2000))
                           .scalars())
        first, last = conn.execute(select(func.min(movements.c.effective_date),
                                          func.max(movements.c.effective_date))).one()
        movement_count = conn.execute(select(func.count()).select_from(movements)).scalar_one()
    past = first + (last - first) * 2 // 3  # two thirds into the book: most of it is dated before
    book = {"customers": len(customer_ids), "invoices": invoice_count, "movements": movement_count,
            "first_effective_date": str(first), "last_effective_date": str(last),
            "today": str(today), "past_as_of": str(past)}
    log(f"book: {book}")

    def run(work: Callable[[Any], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with engine.connect() as conn:
                return work(conn)
        return call

    middle = customer_ids[len(customer_ids) // 2]
    from services.ledger.read.aging import encode_cursor

    cases: dict[str, tuple[Callable[[], Any], int]] = {
        "aging_by_currency_today": (run(lambda c: aging(c, today)), max(runs // 10, 20)),
        "aging_by_currency_past": (run(lambda c: aging(c, past)), max(runs // 10, 20)),
        "aging_by_customer_first_page_100": (
            run(lambda c: aging(c, today, group_by=GroupBy("customer"), limit=100)), runs),
        "aging_by_customer_middle_page_100": (
            run(lambda c: aging(c, today, group_by=GroupBy("customer"), limit=100,
                                cursor=encode_cursor(middle, "ZZZ"))), runs),
        "aging_by_customer_past_page_100": (
            run(lambda c: aging(c, past, group_by=GroupBy("customer"), limit=100)), runs),
        "customer_balance": (run(lambda c: (reads.customer_exists(c, cid := rng.choice(customer_ids)),
                                            reads.balances(c, cid, today))), runs * 5),
        "invoice": (run(lambda c: reads.invoice(c, rng.choice(invoice_ids))), runs * 5),
        "invoice_as_of_past": (run(lambda c: reads.invoice(c, rng.choice(invoice_ids), past)), runs * 5),
    }
    results: dict[str, Any] = {"book": book}
    try:
        for name, (call, count) in cases.items():
            results[name] = _latencies(call, count)
            log(f"{name}: {results[name]}")
    finally:
        engine.dispose()
    results["statement"] = statements(url, runs)
    return results


# the heavy customer's statements: December 2024 (the opening balance sums eleven months of
# movements before it) and the whole of 2024 (a line for each of about 4,800 movements)
STATEMENT_PERIODS = {"month": (date(2024, 12, 1), date(2024, 12, 31)),
                     "year": (date(2024, 1, 1), date(2024, 12, 31))}
_RAW_ROWS = ("SELECT currency, kind, effective_date, invoice_id, credit, open_delta, unapplied_delta "
             "FROM ledger_movements WHERE customer_id = %s AND effective_date {} "
             "ORDER BY currency, effective_date, position, id")
_RAW_PERIOD = _RAW_ROWS.format("BETWEEN %s AND %s")
_RAW_TO_END = _RAW_ROWS.format("<= %s")


def statements(url: str, runs: int) -> dict[str, Any]:
    """p50/p99 of the heavy customer's statement of account as ``GET /customers/{id}/statement``
    runs it (a pooled connection, the customer's existence, then ``statement()``), next to raw
    baselines of the same run: its movements fetched by plain psycopg on one open connection,
    nothing computed: the period's rows, and every row up to the period's end."""
    import psycopg
    from sqlalchemy import func, select

    from services.ledger.read import queries as reads
    from services.ledger.read.projections import movements
    from services.ledger.read.statement import statement
    from shared.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        customer = HEAVY_CUSTOMER
        count = conn.execute(select(func.count()).select_from(movements)
                             .where(movements.c.customer_id == customer)).scalar_one()
        if not count:  # a book built before the heavy customer: its busiest customer instead
            customer, count = conn.execute(
                select(movements.c.customer_id, func.count()).group_by(movements.c.customer_id)
                .order_by(func.count().desc()).limit(1)).one()
            log(f"statement: no {HEAVY_CUSTOMER} in this book; its busiest customer instead")
    results: dict[str, Any] = {"customer_id": customer, "movements": count}
    log(f"statement: {customer}, {count:,} movements")

    def handler(first: date, last: date) -> Callable[[], Any]:
        def call() -> Any:
            with engine.connect() as conn:
                return reads.customer_exists(conn, customer), statement(conn, customer, first, last)
        return call

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as raw:
            def fetch(sql: str, *params: Any) -> Callable[[], Any]:
                return lambda: raw.execute(sql, (customer, *params)).fetchall()

            for label, (first, last) in STATEMENT_PERIODS.items():
                _, found = handler(first, last)()
                figures = {
                    "from": str(first), "to": str(last), "lines": sum(len(c.lines) for c in found),
                    "period_movements": len(fetch(_RAW_PERIOD, first, last)()),
                    "movements_to_end": len(fetch(_RAW_TO_END, last)()),
                    "statement": _latencies(handler(first, last), runs),
                    "raw_period_rows": _latencies(fetch(_RAW_PERIOD, first, last), runs),
                    "raw_rows_to_end": _latencies(fetch(_RAW_TO_END, last), runs),
                }
                results[label] = figures
                log(f"statement, {label}: {figures}")
    finally:
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queries", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "build", "replay", "rebuild", "queries", "statement"],
                        default="all", help="rebuild: only the online replay, over read models already "
                        "built; statement: only the heavy customer's statement of account")
    parser.add_argument("--database", default="bench_queries_book", help="PostgreSQL database name")
    parser.add_argument("--replace", action="store_true", help="drop and rebuild an existing database")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_400_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=20_000, help="notifications read per batch")
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each page query")
    parser.add_argument("--no-verify", action="store_true", help="replay without the row-for-row check")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = database_url(args.database)
    results: dict[str, Any] = {"database": args.database}
    if args.stage in ("all", "build"):
        create_database(args.database, replace=args.replace)
        results["build"] = build(url, args.customers, args.events, args.seed)
    if args.stage in ("all", "replay"):
        from services.ledger.read.schema import migrate_read_models

        migrate_read_models(url)
        results["read_log"] = read_rates(url, args.batch)
        # the read models as the service's projector makes them (batches of 2,000), once
        results["live_projector"] = project_live(url, 2_000)
        results["replay"] = replay(url, verify=not args.no_verify)
    if args.stage == "rebuild":
        results["replay"] = replay(url, verify=not args.no_verify)
    if args.stage in ("all", "queries"):
        results["queries"] = queries(url, args.runs, args.seed)
    if args.stage == "statement":
        results["statement"] = statements(url, args.runs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"queries-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
