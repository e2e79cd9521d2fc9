"""bench.book's advance-receipt traffic: the share asked for, the plain book unchanged, and no
refusal of it by the ledger whatever the order between topics."""

from __future__ import annotations

import hashlib
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest

from bench.book import (
    ADVANCE_KINDS,
    INVOICES_TOPIC,
    PAYMENTS_TOPIC,
    Book,
    advance_messages,
    generate_book,
)
from services.ledger.domain import CustomerAccount, LedgerError
from shared.erp_events import InvalidMessage, decode_message

CUSTOMERS, EVENTS, SEED = 300, 7000, 11
# the digest of generate_book(300, 7000, seed=11) without advance traffic (or habits): pinned
# when advance traffic came, and again when a protected customer's adjustments went down only
PLAIN_DIGEST = "30830a832426f97dea6fe8368588957af014162b2a70837d3a08e31deac11a1f"


def digest(book: Book) -> str:
    hasher = hashlib.sha256()
    for m in book.messages:
        hasher.update(m.topic.encode() + b"\0" + m.key + b"\0" + m.value + b"\0" + m.kind.encode() + b"\n")
    return hasher.hexdigest()


@pytest.fixture(scope="module")
def book() -> Book:
    return generate_book(CUSTOMERS, EVENTS, seed=SEED, advance=0.05)


def data_of(book: Book) -> list[tuple[str, str, dict[str, Any]]]:
    """(topic, kind, data) of every message that is JSON, in publish order."""
    found = []
    for m in book.messages:
        try:
            found.append((m.topic, m.kind, orjson.loads(m.value)["data"]))
        except orjson.JSONDecodeError:
            continue
    return found


def tagged_payments(messages: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [data for _, kind, data in messages
            if kind == "payment.received" and "prepayment_request_id" in data]


def test_without_advance_the_book_is_the_one_before_it() -> None:
    plain = generate_book(CUSTOMERS, EVENTS, seed=SEED)
    assert digest(plain) == PLAIN_DIGEST
    assert digest(generate_book(CUSTOMERS, EVENTS, seed=SEED, advance=0.0)) == PLAIN_DIGEST
    assert advance_messages(plain) == 0
    assert not any(kind in ADVANCE_KINDS for kind in plain.counts)


def test_the_share_asked_for_is_advance_traffic(book: Book) -> None:
    assert len(book.messages) == EVENTS
    messages = data_of(book)
    tagged = len(tagged_payments(messages))
    new = Counter(kind for _, kind, _ in messages if kind in ADVANCE_KINDS)
    assert tagged == book.tagged > 0
    assert sum(new.values()) + tagged == advance_messages(book) == int(EVENTS * 0.05)
    assert new["prepayment.requested"] > tagged / 2 > new["payment.refunded"] > 0
    assert new["prepayment.cancelled"] > 0
    # the other types shrink in proportion
    plain = generate_book(CUSTOMERS, EVENTS, seed=SEED)
    for kind in ("invoice.issued", "credit_note.issued", "dispute.opened", "payment.reversed"):
        assert book.counts[kind] == pytest.approx(plain.counts[kind] * 0.95, rel=0.03), kind
    requested = {d["request_id"]: d["requested_date"] for _, k, d in messages if k == "prepayment.requested"}
    early = [p for p in tagged_payments(messages)
             if p["received_date"] < requested[p["prepayment_request_id"]]]
    assert early  # some tagged payments are dated before their request


def test_refunds_only_take_cash_that_nothing_else_can(book: Book) -> None:
    messages = data_of(book)
    requests = {d["request_id"]: d for _, k, d in messages if k == "prepayment.requested"}
    cancelled = {d["request_id"] for _, k, d in messages if k == "prepayment.cancelled"}
    ordered = {d["attributes"]["order_id"] for _, k, d in messages
               if k == "invoice.issued" and "order_id" in d["attributes"]}
    assert ordered and ordered <= {r.get("order_id") for r in requests.values()}
    seen: dict[str, dict[str, Any]] = {}  # tagged payments so far on ar.payments
    refunds = 0
    for topic, kind, data in messages:
        if kind == "payment.received" and "prepayment_request_id" in data:
            seen[data["payment_id"]] = data
        if kind == "payment.refunded":
            assert topic == PAYMENTS_TOPIC
            payment = seen[data["payment_id"]]  # before it, on the same topic
            request = requests[payment["prepayment_request_id"]]
            assert request["request_id"] not in cancelled
            assert request.get("order_id") not in ordered
            assert Decimal(data["amount"]) <= Decimal(payment["amount"])
            assert data["refund_date"] > payment["received_date"]
            refunds += 1
    assert refunds == book.counts["payment.refunded"]


@pytest.mark.parametrize("first", [None, INVOICES_TOPIC, PAYMENTS_TOPIC])
@pytest.mark.parametrize("kind", ["advance", "plain", "habits"])
def test_the_ledger_refuses_no_valid_message(book: Book, kind: str, first: str | None) -> None:
    """In publish order, and with one topic consumed wholly before the others: the advance book,
    the plain one and one with payment habits (a write-off is never refused: nothing that one
    topic may bring before another pays the invoice to write off)."""
    if kind != "advance":
        book = generate_book(CUSTOMERS, EVENTS, seed=SEED, habits=kind == "habits")
    records = list(enumerate(book.messages))
    if first is not None:
        records.sort(key=lambda item: item[1].topic != first)  # stable: each topic keeps its order
    accounts: dict[str, CustomerAccount] = {}
    refused: Counter[str] = Counter()
    for offset, record in records:
        try:
            message = decode_message(record.value, topic=record.topic, partition=0, offset=offset,
                                     key=record.key)
        except InvalidMessage:
            assert record.kind == "invalid"
            continue
        account = accounts.get(message.customer_id)
        if account is None:
            account = accounts[message.customer_id] = CustomerAccount(message.customer_id)
        try:
            account.handle(message)
        except LedgerError:
            refused[record.kind] += 1
        account.collect_events()
    assert not refused
