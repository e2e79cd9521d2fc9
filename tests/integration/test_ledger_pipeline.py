"""The ledger's ingestion pipeline end to end, through the real embedded broker.

ERP CloudEvents are published to the inbound topics with aiokafka; the ledger (in process
under uvicorn, or as a child process that is SIGKILLed) consumes them into its event
store and projections; the tests read the REST surface, the metrics, the event store and
the outbound topics. Every test runs on SQLite and on PostgreSQL (``database_url``) and
gets a broker of its own, so the inbound topics hold exactly what the test published.

Nothing waits a fixed time: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.broker import EmbeddedBroker
from tests.integration.ledger_harness import (
    DEADLETTER_TOPIC,
    OUTBOUND_TOPIC,
    InProcessLedger,
    LedgerClient,
    LedgerProcess,
    Publisher,
    alive,
    balance_rows,
    cloud_event,
    count_stored_events,
    create_ledger_topics,
    credit_note_issued,
    customer_upserted,
    dispute_opened,
    encode,
    invoice_issued,
    ledger_env,
    ledger_settings,
    max_notification_id,
    money,
    origin_keys,
    payment_received,
    poll,
    read_topic,
    stored_events,
    tracked_positions,
)

WAIT = 30.0  # deadline for one "until" condition (typically met within a second or two)


# --------------------------------------------------------------------------- a small book

# Customer ACME-A (EUR): two invoices, a payment allocated to the first, a credit note on
# the second, a dispute on the first, and a profile.
# Customer ACME-B (USD): two invoices and one payment without allocations that covers both
# (oldest due date first) and leaves 50.00 unapplied.
# Topics carry no cross-topic order: whatever order the consumer sees them in, the
# figures below are the same (a payment or dispute before its invoice waits for it).
BOOK = [
    invoice_issued("ACME-A", "A-1", "1000.00", issue="2024-01-01", due="2024-01-31"),
    invoice_issued("ACME-A", "A-2", "500.00", issue="2024-02-01", due="2024-03-02"),
    payment_received("ACME-A", "PA-1", "300.00", received="2024-01-20", allocations=[("A-1", "300.00")]),
    credit_note_issued("ACME-A", "CNA-1", "100.00", issue="2024-02-10", invoice="A-2"),
    dispute_opened("ACME-A", "DA-1", "A-1", "200.00", opened="2024-02-15"),
    customer_upserted("ACME-A", "Acme GmbH"),
    invoice_issued("ACME-B", "B-1", "250.00", currency="USD", issue="2024-03-01", due="2024-03-31"),
    invoice_issued("ACME-B", "B-2", "100.00", currency="USD", issue="2024-04-01", due="2024-05-01"),
    payment_received("ACME-B", "PB-1", "400.00", currency="USD", received="2024-03-15"),
]
BOOK_CUSTOMERS = ("ACME-A", "ACME-B")
# one stored event per message, plus the "Opened" event of each new customer account
BOOK_EVENTS = len(BOOK) + len(BOOK_CUSTOMERS)

INVOICE_FIELDS = ("customer_id", "currency", "amount", "open_amount", "status", "settled_date",
                  "days_late", "days_to_settle", "disputed_amount")
EXPECTED_INVOICES: dict[str, dict[str, Any]] = {
    # 1000 - 300 paid; the 200 dispute stays in the balance, shown apart
    "A-1": {"customer_id": "ACME-A", "currency": "EUR", "amount": "1000.00", "open_amount": "700.00",
            "status": "partially_paid", "settled_date": None, "days_late": None,
            "days_to_settle": None, "disputed_amount": "200.00"},
    # 500 - 100 credit note
    "A-2": {"customer_id": "ACME-A", "currency": "EUR", "amount": "500.00", "open_amount": "400.00",
            "status": "partially_paid", "settled_date": None, "days_late": None,
            "days_to_settle": None, "disputed_amount": "0.00"},
    # paid by PB-1 on its received date: 14 days after issue, before due
    "B-1": {"customer_id": "ACME-B", "currency": "USD", "amount": "250.00", "open_amount": "0.00",
            "status": "paid", "settled_date": "2024-03-15", "days_late": 0, "days_to_settle": 14,
            "disputed_amount": "0.00"},
    # paid from PB-1's remaining cash the day it was issued
    "B-2": {"customer_id": "ACME-B", "currency": "USD", "amount": "100.00", "open_amount": "0.00",
            "status": "paid", "settled_date": "2024-04-01", "days_late": 0, "days_to_settle": 0,
            "disputed_amount": "0.00"},
}


def _balance(open_: str, overdue: str, disputed: str, unapplied: str) -> dict[str, str]:
    return {"open_amount": open_, "overdue_amount": overdue, "disputed_amount": disputed,
            "unapplied_cash": unapplied}


EXPECTED_BALANCES: dict[tuple[str, str], dict[str, dict[str, str]]] = {
    # everything booked and due
    ("ACME-A", "2030-01-01"): {"EUR": _balance("1100.00", "1100.00", "200.00", "0.00")},
    # A-1 overdue (due 01-31), A-2 not yet (due 03-02); dispute opened 02-15
    ("ACME-A", "2024-02-20"): {"EUR": _balance("1100.00", "700.00", "200.00", "0.00")},
    # only A-1 (1000) less the payment of 01-20; nothing due yet
    ("ACME-A", "2024-01-25"): {"EUR": _balance("700.00", "0.00", "0.00", "0.00")},
    # 400 received, 250 + 100 applied
    ("ACME-B", "2030-01-01"): {"USD": _balance("0.00", "0.00", "0.00", "50.00")},
}


async def book_snapshot(ledger: LedgerClient) -> dict[str, Any]:
    invoices = {}
    for invoice_id in EXPECTED_INVOICES:
        found = await ledger.invoice(invoice_id)
        invoices[invoice_id] = {k: found[k] for k in INVOICE_FIELDS} if found else None
    balances = {key: await ledger.balances(key[0], as_of=key[1]) for key in EXPECTED_BALANCES}
    return {"invoices": invoices, "balances": balances}


EXPECTED_BOOK = {"invoices": EXPECTED_INVOICES, "balances": EXPECTED_BALANCES}


async def wait_for_book(ledger: LedgerClient) -> None:
    await poll(lambda: book_snapshot(ledger), lambda s: s == EXPECTED_BOOK, timeout=WAIT,
               what="REST shows the hand-computed book")


# --------------------------------------------------------------------------- 1. publish → REST


async def test_published_book_shows_in_rest(broker: EmbeddedBroker, database_url: str) -> None:
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger:
        async with Publisher(broker.bootstrap) as publisher:
            await publisher.send_all(BOOK)
        await wait_for_book(ledger)
        metrics = await ledger.wait_metric("receivables_messages_processed_total", len(BOOK), timeout=WAIT)
        assert metrics["receivables_messages_processed_total"] == len(BOOK)
        assert metrics.get("receivables_messages_deadlettered_total", 0) == 0
        assert metrics.get("receivables_partition_resets_total", 0) == 0
    assert count_stored_events(database_url) == BOOK_EVENTS


# --------------------------------------------------------------------------- 2. idempotency


async def test_same_messages_three_times_change_nothing(broker: EmbeddedBroker, database_url: str) -> None:
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger:
        async with Publisher(broker.bootstrap) as publisher:
            await publisher.send_all(BOOK)
            await wait_for_book(ledger)
            await ledger.wait_metric("receivables_messages_processed_total", len(BOOK), timeout=WAIT)
            assert count_stored_events(database_url) == BOOK_EVENTS
            await wait_for_outbox(ledger, database_url)
            first_ids = {event["id"] for event in await read_outbound(broker)}

            await publisher.send_all(BOOK)
            await publisher.send_all(BOOK)
        metrics = await ledger.wait_metric(
            "receivables_messages_duplicate_total", 2 * len(BOOK), timeout=WAIT
        )
        assert metrics["receivables_messages_duplicate_total"] == 2 * len(BOOK)
        assert metrics["receivables_messages_processed_total"] == len(BOOK)
        assert metrics.get("receivables_partition_resets_total", 0) == 0
        assert await book_snapshot(ledger) == EXPECTED_BOOK
        assert count_stored_events(database_url) == BOOK_EVENTS
        keys = origin_keys(stored_events(database_url))
        assert sorted(keys) == sorted((e["source"], e["id"]) for e in BOOK)

        # the outbox published the ledger's events, and the repeats added none
        records = await read_outbound(broker)
        assert {r["id"] for r in records} == first_ids
        types = {r["type"] for r in records}
        assert {"ledger.invoice_opened", "ledger.payment_applied", "ledger.invoice_settled",
                "ledger.invoice_disputed", "ledger.customer_updated",
                "ledger.unapplied_cash_changed"} <= types
        assert all(r["source"] == "receivables/ledger" for r in records)
        assert {r["subject"] for r in records} == set(BOOK_CUSTOMERS)


async def wait_for_outbox(ledger: LedgerClient, database_url: str) -> None:
    """Wait until the outbox relay has published (and the broker acknowledged) every stored event."""
    last = max_notification_id(database_url)
    await ledger.wait_metric("receivables_follower_position{follower=outbox}", last, timeout=WAIT)


async def read_outbound(broker: EmbeddedBroker, at_least: int = 1) -> list[dict[str, Any]]:
    records = await read_topic_events(broker, OUTBOUND_TOPIC, at_least)
    for record, event in records:
        assert record.key == event["subject"].encode()
    return [event for _, event in records]


async def read_topic_events(broker: EmbeddedBroker, topic: str, at_least: int) -> list[tuple[Any, Any]]:
    records = await read_topic(broker.bootstrap, topic, until=lambda rs: len(rs) >= at_least, timeout=WAIT)
    return [(r, orjson.loads(r.value)) for r in records]


# --------------------------------------------------------------------------- 3. dead letters


async def test_invalid_messages_go_to_deadletter_and_consumption_goes_on(
    broker: EmbeddedBroker, database_url: str
) -> None:
    customer = "DL-1"
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger, \
            Publisher(broker.bootstrap) as publisher:
        # the invoice the currency mismatches refer to must be known before they arrive
        await publisher.send(invoice_issued(customer, "DL-INV-1", "100.00", currency="EUR"))
        await poll(lambda: ledger.invoice("DL-INV-1"), lambda i: i is not None, timeout=WAIT,
                   what="DL-INV-1 booked")

        key = customer.encode()
        valid_payment = payment_received(customer, "DL-P-2", "30.00", allocations=[("DL-INV-1", "30.00")])
        bad: dict[str, tuple[str, bytes, list[str]]] = {
            # kind: (topic, bytes sent, what the reason must mention)
            "not JSON": ("ar.invoices", b'{"specversion": "1.0", "id": ', ["not JSON"]),
            "not a CloudEvent": ("ar.payments", orjson.dumps({
                "id": "dl-no-envelope", "type": "payment.received", "data": valid_payment["data"],
            }), ["not a CloudEvent", "specversion", "source"]),
            "unknown type": ("ar.invoices", encode(cloud_event(
                "invoice.exploded", {"customer_id": customer, "invoice_id": "DL-INV-X"},
                event_id="dl-unknown-type",
            )), ["unknown event type", "invoice.exploded"]),
            "schema violation": ("ar.invoices", encode(_without(
                invoice_issued(customer, "DL-INV-2", "50.00", event_id="dl-missing-field"), "due_date"
            )), ["data.due_date", "Field required"]),
            "currency mismatch (payment)": ("ar.payments", encode(payment_received(
                customer, "DL-P-USD", "40.00", currency="USD", allocations=[("DL-INV-1", "40.00")],
            )), ["USD", "EUR", "DL-INV-1"]),
            "currency mismatch (credit note)": ("ar.invoices", encode(credit_note_issued(
                customer, "DL-CN-GBP", "10.00", currency="GBP", invoice="DL-INV-1",
            )), ["GBP", "EUR", "DL-INV-1"]),
            "negative amount": ("ar.payments", encode(payment_received(
                customer, "DL-P-NEG", "-25.00", event_id="dl-negative",
            )), ["data.amount: must not be negative", "-25.00"]),
        }
        sent = {}
        for kind, (topic, value, _) in bad.items():
            sent[kind] = await publisher.send_raw(topic, key, value)
        # valid messages right behind the bad ones, on the same partitions
        await publisher.send(valid_payment)
        await publisher.send(invoice_issued(customer, "DL-INV-3", "70.00", currency="EUR",
                                            issue="2024-02-01", due="2024-03-01"))

        await poll(lambda: ledger.invoice("DL-INV-3"), lambda i: i is not None, timeout=WAIT,
                   what="the valid invoice after the bad ones is applied")
        invoice = await poll(lambda: ledger.invoice("DL-INV-1"), lambda i: i["open_amount"] == "70.00",
                             timeout=WAIT, what="the valid payment after the bad ones is applied")
        assert invoice["status"] == "partially_paid"
        assert await ledger.balances(customer) == {"EUR": {
            "open_amount": "140.00", "overdue_amount": "140.00", "disputed_amount": "0.00",
            "unapplied_cash": "0.00",
        }}

        letters = await read_topic_events(broker, DEADLETTER_TOPIC, len(bad))
        assert len(letters) == len(bad), [e["data"]["reason"] for _, e in letters]
        by_origin = {(e["data"]["topic"], e["data"]["partition"], e["data"]["offset"]): (r, e)
                     for r, e in letters}
        for kind, (topic, value, mentions) in bad.items():
            meta = sent[kind]
            record, letter = by_origin[(topic, meta.partition, meta.offset)]
            assert letter["specversion"] == "1.0" and letter["type"] == "deadletter.rejected", kind
            assert letter["source"] == "receivables/ledger", kind
            assert base64.b64decode(letter["data"]["original"]) == value, kind
            assert letter["data"]["key"] == customer and record.key == key, kind
            reason = letter["data"]["reason"]
            for word in mentions:
                assert word in reason, (kind, reason)

        metrics = await ledger.metrics()
        assert metrics["receivables_messages_deadlettered_total"] == len(bad)
        assert metrics["receivables_messages_processed_total"] == 3
        assert metrics.get("receivables_partition_resets_total", 0) == 0
    # the rejects left no trace in the event store: Opened + two invoices + one payment
    assert count_stored_events(database_url) == 4


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {**event, "data": {k: v for k, v in event["data"].items() if k != field}}


# --------------------------------------------------------------------------- 4. SIGKILL mid-batch

BULK_CUSTOMERS = 1000
BULK_INVOICES = 10  # per customer, each with one partial payment: 20,000 messages


def bulk_book() -> tuple[list[dict[str, Any]], dict[str, Decimal], dict[str, Decimal]]:
    """Messages, expected open amount per customer, and per invoice (simple arithmetic)."""
    events: list[dict[str, Any]] = []
    per_customer: dict[str, Decimal] = {}
    per_invoice: dict[str, Decimal] = {}
    for c in range(BULK_CUSTOMERS):
        customer = f"BULK-{c:05d}"
        per_customer[customer] = Decimal(0)
        for i in range(BULK_INVOICES):
            invoice = f"{customer}-I{i:02d}"
            amount = Decimal(f"{100 + (c * 7 + i * 13) % 900}.{(c + i) % 100:02d}")
            paid = Decimal(f"{(c + 3 * i) % 90 + 1}.50")  # always less than the invoice
            day = 1 + i
            events.append(invoice_issued(customer, invoice, str(amount), issue=f"2024-03-{day:02d}",
                                         due=f"2024-04-{day:02d}"))
            events.append(payment_received(customer, f"{customer}-P{i:02d}", str(paid),
                                           received=f"2024-03-{day + 10:02d}",
                                           allocations=[(invoice, str(paid))]))
            per_invoice[invoice] = amount - paid
            per_customer[customer] += amount - paid
    return events, per_customer, per_invoice


@pytest.mark.slow
async def test_sigkill_mid_batch_then_restart_stores_every_event_once(
    broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    events, per_customer, per_invoice = bulk_book()
    expected_events = len(events) + BULK_CUSTOMERS
    async with Publisher(broker.bootstrap) as publisher:
        acks = await publisher.send_all(events)
    ends: dict[str, int] = {}
    for meta in acks:
        name = f"{meta.topic}:{meta.partition}"
        ends[name] = max(ends.get(name, -1), meta.offset)

    ledger = LedgerProcess(ledger_env(broker.bootstrap, database_url), tmp_path / "ledger.log")
    try:
        ledger.start()
        await ledger.wait_live()
        await ledger.wait_metric("receivables_messages_processed_total", len(events) // 5, timeout=60)
        followers = ledger.kill()
        stored_at_kill = count_stored_events(database_url)
        assert 0 < stored_at_kill < expected_events, "the kill was meant to land mid-way"
        # the followers' process sees its input close and stops too: no orphan writes on
        assert followers, "the followers run in a child process"
        await poll(lambda: asyncio.sleep(0, [p for p in followers if alive(p)]), lambda left: not left,
                   timeout=WAIT, what="the killed service's followers process exits")

        ledger.start()  # same port, same database, same consumer group
        await ledger.wait_live()
        await poll(
            lambda: asyncio.to_thread(tracked_positions, database_url),
            lambda positions: all(positions.get(name) == end for name, end in ends.items()),
            timeout=90, what="every inbound partition consumed to its end", interval=0.25,
        )
        after = await ledger.metrics()
        last = max_notification_id(database_url)
        await ledger.wait_metric(
            "receivables_follower_position{follower=ledger-projections}", last, timeout=60
        )

        # no message applied twice, none lost: one event per message and one per account
        stored = stored_events(database_url)
        assert len(stored) == expected_events, (len(stored), expected_events)
        kinds = Counter(kind for kind, _ in stored)
        assert kinds == {"Opened": BULK_CUSTOMERS, "InvoiceIssued": len(events) // 2,
                         "CreditReceived": len(events) // 2}
        keys = Counter(origin_keys(stored))
        assert max(keys.values()) == 1
        assert set(keys) == {(e["source"], e["id"]) for e in events}
        # what was re-read after the kill had not been committed: applied, not duplicate
        assert after.get("receivables_messages_duplicate_total", 0) == 0
        assert after.get("receivables_messages_deadlettered_total", 0) == 0
        assert after.get("receivables_partition_resets_total", 0) == 0  # the broker kept its data

        # the read models agree with the arithmetic, for every customer
        rows = balance_rows(database_url)
        assert {c: r["open_amount"] for (c, _), r in rows.items()} == per_customer
        assert all(r["unapplied_cash"] == 0 and r["disputed_amount"] == 0 for r in rows.values())
        for c in range(0, BULK_CUSTOMERS, 97):  # and through REST for a sample
            customer = f"BULK-{c:05d}"
            assert await ledger.balances(customer) == {"EUR": {
                "open_amount": money(per_customer[customer]),
                "overdue_amount": money(per_customer[customer]),
                "disputed_amount": "0.00", "unapplied_cash": "0.00",
            }}
            invoice = await ledger.invoice(f"{customer}-I03")
            assert invoice is not None
            assert invoice["open_amount"] == money(per_invoice[f"{customer}-I03"])
            assert invoice["status"] == "partially_paid"
    except BaseException:
        print(ledger.log_tail())
        raise
    finally:
        ledger.terminate()
        await ledger.close()


# --------------------------------------------------------------------------- 5. followers process


async def test_killed_followers_process_is_restarted_and_catches_up(
    broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    customer = "FOL-1"
    ledger = LedgerProcess(ledger_env(broker.bootstrap, database_url), tmp_path / "ledger.log")
    try:
        ledger.start()
        await ledger.wait_live()
        async with Publisher(broker.bootstrap) as publisher:
            await publisher.send_all([invoice_issued(customer, "F-1", "100.00")])
            await poll(lambda: ledger.invoice("F-1"), lambda i: i is not None, timeout=WAIT,
                       what="the first invoice projected")
            first = await poll(lambda: asyncio.sleep(0, ledger.children()), lambda c: len(c) == 1,
                               timeout=WAIT, what="one followers process")
            os.kill(first[0], signal.SIGKILL)
            # committed while no follower runs: projected once the service has restarted it
            await publisher.send_all([payment_received(customer, "FP-1", "30.00",
                                                       allocations=[("F-1", "30.00")])])
            await poll(lambda: ledger.invoice("F-1"), lambda i: i is not None and i["open_amount"] == "70.00",
                       timeout=WAIT, what="the payment projected by a new followers process")
        assert ledger.children() and ledger.children() != first
        metrics = await ledger.metrics()
        assert metrics.get("receivables_errors_total{stage=followers-process}", 0) >= 1
        assert (await ledger.balances(customer) or {})["EUR"]["open_amount"] == "70.00"
    except BaseException:
        print(ledger.log_tail())
        raise
    finally:
        ledger.terminate()
        await ledger.close()


# --------------------------------------------------------------------------- 6. broker restart


async def test_broker_restart_resumes_without_service_restart(
    broker: EmbeddedBroker, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="shared.consumer")
    customer = "RST-1"
    old = [invoice_issued(customer, f"R-{i}", "100.00", issue=f"2024-01-{i:02d}", due=f"2024-02-{i:02d}")
           for i in range(1, 9)]
    old += [payment_received(customer, "RP-1", "40.00", allocations=[("R-1", "40.00")]),
            payment_received(customer, "RP-2", "10.00", allocations=[("R-2", "10.00")])]
    async with InProcessLedger(ledger_settings(broker.bootstrap, database_url)) as ledger:
        async with Publisher(broker.bootstrap) as publisher:
            acks = await publisher.send_all(old)
        await poll(lambda: ledger.balances(customer), lambda b: b is not None
                   and b.get("EUR", {}).get("open_amount") == "750.00",
               timeout=WAIT, what="first messages applied")
        invoice_partition = acks[0].partition
        before = await asyncio.to_thread(tracked_positions, database_url)
        assert before[f"ar.invoices:{invoice_partition}"] == 7
        assert count_stored_events(database_url) == len(old) + 1

        # SIGTERM, then SIGKILL after a second (Tansu lingers ~5 s over open connections)
        await asyncio.to_thread(broker.stop, 1.0)
        # the service notices the outage, and its REST reads go on answering
        await poll(lambda: ledger.get("/health/ready"), lambda r: r.status_code == 503, timeout=WAIT,
                   what="/health/ready reports Kafka unreachable")
        assert (await ledger.invoice("R-1") or {}).get("open_amount") == "60.00"
        assert (await ledger.balances(customer) or {})["EUR"]["open_amount"] == "750.00"
        assert (await ledger.get("/health/live")).status_code == 200

        # same port, empty broker: every partition starts again at offset 0
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(create_ledger_topics, broker)
        new = [
            old[0],  # R-1 once more: already applied, must not count twice
            invoice_issued(customer, "R-9", "90.00", issue="2024-03-01", due="2024-03-31"),
            payment_received(customer, "RP-3", "25.00", allocations=[("R-9", "25.00")]),
            invoice_issued("RST-2", "S-1", "55.00", issue="2024-03-01", due="2024-03-31"),
        ]
        async with Publisher(broker.bootstrap) as publisher:
            new_acks = await publisher.send_all(new)
        # fewer messages than before on each partition: the stored positions are past the ends
        assert new_acks[1].partition == invoice_partition and new_acks[1].offset < 7

        await poll(lambda: ledger.invoice("R-9"), lambda i: i is not None and i["open_amount"] == "65.00",
                   timeout=WAIT, what="new messages after the broker restart applied")
        await poll(lambda: ledger.invoice("S-1"), lambda i: i is not None, timeout=WAIT,
                   what="a new customer after the broker restart")
        assert (await ledger.invoice("R-1") or {})["open_amount"] == "60.00"
        assert (await ledger.balances(customer) or {})["EUR"]["open_amount"] == "815.00"

        metrics = await ledger.wait_metric("receivables_messages_duplicate_total", 1, timeout=WAIT)
        assert metrics["receivables_messages_duplicate_total"] == 1
        assert metrics.get("receivables_partition_resets_total", 0) > 0
        assert metrics["receivables_messages_processed_total"] == len(old) + len(new) - 1
        assert (await ledger.get("/health/ready")).status_code == 200
    # old + 3 new messages + the new customer's account; the repeat of R-1 stored nothing
    assert count_stored_events(database_url) == len(old) + 1 + 3 + 1
    positions = tracked_positions(database_url)
    assert positions[f"ar.invoices:{invoice_partition}"] == 7  # the old life, kept
    assert positions[f"ar.invoices:{invoice_partition}:epoch1"] >= 1  # the new life, tracked apart
    assert any("PARTITION RESET" in r.getMessage() for r in caplog.records)
