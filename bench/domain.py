"""Ledger domain benchmark: the synthetic book folded through CustomerAccount in memory.

No Kafka, no database: each message is decoded once up front (as the consumer does), then
the timed loop is ``account.handle(message)`` per message, one aggregate per customer,
refusals caught as ``LedgerApplication.prepare`` does. It prints CPU µs per message,
overall and per message type, and a SHA-256 digest over every event produced (type name,
originator version, payload without timestamp and originator id) so that a change to the
domain can be shown to leave the stored events byte-for-byte the same.

For context it also measures a raw baseline in the same run: the same number of events
of a trivial eventsourcing aggregate (one ``@event`` method with one string argument), the
floor that the library's event machinery sets.

Usage (from the repository root)::

    python -m bench.domain                                  # 10,000 customers, 300,000 messages
    python -m bench.domain --customers 2000 --events 50000
    python -m bench.domain --profile                        # pyinstrument: the hottest frames
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import time
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate, event

from bench.book import describe, generate_book
from services.ledger.domain import CustomerAccount, LedgerError
from shared.erp_events import InboundMessage, InvalidMessage, decode_message

COLLECT_EVERY = 1_000  # messages between draining pending events into the digest
SKIPPED_FIELDS = ("timestamp", "originator_id")  # differ from run to run


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def digest_events(hasher: Any, ordered: Any, events: list[Any]) -> None:
    """``hasher``: keys sorted (content); ``ordered``: keys in insertion order, as stored."""
    for domain_event in events:
        payload = {k: v for k, v in domain_event.__dict__.items() if k not in SKIPPED_FIELDS}
        name, version = type(domain_event).__name__.encode(), str(domain_event.originator_version).encode()
        for digest, option in ((hasher, orjson.OPT_SORT_KEYS), (ordered, None)):
            digest.update(name)
            digest.update(version)
            digest.update(orjson.dumps(payload, default=_default, option=option))


def decode_book(customers: int, events: int, seed: int) -> tuple[list[tuple[str, InboundMessage]], int]:
    """(kind, message) per valid message of the book, and how many were invalid."""
    book = generate_book(customers, events, seed)
    print(describe(book))
    decoded, invalid = [], 0
    for offset, raw in enumerate(book.messages):
        try:
            message = decode_message(raw.value, topic=raw.topic, partition=0, offset=offset, key=raw.key)
        except InvalidMessage:
            invalid += 1
            continue
        decoded.append((raw.kind, message))
    return decoded, invalid


def fold(messages: list[tuple[str, InboundMessage]]) -> dict[str, Any]:
    """Every message through its customer's account; CPU time and event digest."""
    accounts: dict[str, CustomerAccount] = {}
    dirty: dict[str, CustomerAccount] = {}
    per_kind_ns: dict[str, int] = defaultdict(int)
    counts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    hasher, ordered = hashlib.sha256(), hashlib.sha256()
    produced = 0
    cpu = 0.0
    clock = time.thread_time_ns  # CPU, not wall: other processes on the machine do not count
    for start in range(0, len(messages), COLLECT_EVERY):
        chunk = messages[start:start + COLLECT_EVERY]
        cpu_started = time.process_time()
        for kind, message in chunk:
            began = clock()
            account = accounts.get(message.customer_id)
            if account is None:
                account = accounts[message.customer_id] = CustomerAccount(customer_id=message.customer_id)
            try:
                outcomes["applied" if account.handle(message) else "duplicate"] += 1
            except LedgerError:
                outcomes["refused"] += 1
            per_kind_ns[kind] += clock() - began
            counts[kind] += 1
            dirty[message.customer_id] = account
        pending = [account.collect_events() for account in dirty.values()]
        cpu += time.process_time() - cpu_started
        dirty.clear()
        for events in pending:  # outside the timed part: the digest is not the domain's cost
            produced += len(events)
            digest_events(hasher, ordered, events)
    return {
        "cpu": cpu, "per_kind_ns": per_kind_ns, "counts": counts, "outcomes": outcomes,
        "events": produced, "digest": hasher.hexdigest(), "ordered": ordered.hexdigest(),
        "accounts": len(accounts),
    }


class _Trivial(Aggregate):
    @event("Noted")
    def note(self, text: str) -> None:
        self.text = text


def raw_baseline(n: int, per_aggregate: int = 30) -> float:
    """CPU µs per event of a trivial aggregate: the library's event machinery alone."""
    started = time.process_time()
    done = 0
    while done < n:
        aggregate = _Trivial()
        for _ in range(min(per_aggregate, n - done)):
            aggregate.note(text="x")
        aggregate.collect_events()
        done += per_aggregate
    return (time.process_time() - started) / n * 1e6


def report(result: dict[str, Any], invalid: int, baseline: float, runs: list[float]) -> None:
    total = sum(result["counts"].values())
    print(f"\n{total} messages ({invalid} invalid skipped), {result['accounts']} accounts, "
          f"{result['events']} events; outcomes: {dict(result['outcomes'])}")
    spread = ", ".join(f"{cpu / total * 1e6:.1f}" for cpu in runs)
    print(f"domain: {result['cpu'] / total * 1e6:.1f} µs CPU per message "
          f"({result['cpu']:.2f} s CPU in all; best of {len(runs)} runs: {spread})")
    print(f"raw baseline: {baseline:.1f} µs CPU per trivial eventsourcing event "
          f"(Aggregate with one @event method, one str argument)")
    print(f"\n{'type':<22}{'messages':>10}{'µs/msg':>9}{'share':>8}   (CPU per message, thread_time)")
    spent = sum(result["per_kind_ns"].values())
    for kind, count in result["counts"].most_common():
        ns = result["per_kind_ns"][kind]
        print(f"{kind:<22}{count:>10}{ns / count / 1e3:>9.1f}{ns / spent:>8.1%}")
    print(f"\nevent digest (sha256): {result['digest']}")
    print(f"event digest, keys in stored order (sha256): {result['ordered']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="fold the book N times, report the best")
    parser.add_argument("--profile", action="store_true", help="pyinstrument over the fold")
    args = parser.parse_args()

    messages, invalid = decode_book(args.customers, args.events, args.seed)
    gc.collect()
    gc.freeze()  # the decoded book is long-lived: keep it out of the collector's way
    gc.set_threshold(100_000, 50, 100)  # as the service runs (shared/runtime.py)
    baseline = raw_baseline(len(messages))
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        result = fold(messages)
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        runs = [result["cpu"]]
    else:
        results = [fold(messages) for _ in range(args.repeat)]
        if len({(r["digest"], r["ordered"]) for r in results}) != 1:
            raise SystemExit("the event digest differs between runs of the same book")
        runs = [r["cpu"] for r in results]
        result = min(results, key=lambda r: r["cpu"])
    report(result, invalid, baseline, runs)


if __name__ == "__main__":
    main()
