"""Helpers for the poison tests: three services on one broker, cases of poison messages
with their good follow-ups, one stream of them and the checks of its outcome, and the money
invariant between the event store and every read model.

- :class:`Stack`: the ledger, dunning and credit in process on one broker and database (the
  ``three_services`` fixture in ``conftest.py``);
- :class:`Message`, :class:`Case` and their builders (``dead``, ``applied``, ``either``;
  ``invoice``, ``payment``, ``customer_profile``, ``ledger_fact``; ``deep_json``, ``with_raw``);
- :func:`run_stream`: publish the cases' messages and follow-ups in one go, wait for the end
  state, read the dead letters; :func:`check_case`, :func:`check_settled` check it;
- :func:`money_invariant` (from the event store) and :func:`read_models_agree` (ledger REST and
  tables, aging, dunning, credit against it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.credit.application import CreditApplication
from services.dunning.application import DunningApplication
from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import InProcessCredit
from tests.integration.dunning_harness import InProcessDunning, profile
from tests.integration.ledger_harness import (
    DEADLETTER_TOPIC,
    InProcessLedger,
    Publisher,
    balance_rows,
    cloud_event,
    dispute_opened,
    encode,
    invoice_issued,
    partition_of,
    payment_received,
    read_topic,
)

INVOICES, PAYMENTS, DISPUTES, CUSTOMERS = "ar.invoices", "ar.payments", "ar.disputes", "ar.customers"
LEDGER_EVENTS = "ar.ledger.events"
SETTLE = 60.0  # the whole stream's end state, on every service (typically well under it)
CONSUMERS = {INVOICES: ("ledger",), PAYMENTS: ("ledger",), DISPUTES: ("ledger",),
             CUSTOMERS: ("ledger", "dunning", "credit"), LEDGER_EVENTS: ("dunning", "credit")}
MAX_DEADLETTER_BYTES = 1_000_000  # what a Kafka broker takes by default (message.max.bytes)
FOLLOW_UP_LIMIT = "5000.00"
FOLLOW_UP_POLICY = "after-poison"
AT_CEILING = "999999999999.99"  # the largest amount an inbound message may carry
MB = 1024 * 1024


@dataclass
class Stack:
    """The three services on one broker and database, and a publisher for anything."""

    name: str
    database_url: str
    broker: EmbeddedBroker
    ledger: InProcessLedger
    dunning: InProcessDunning
    credit: InProcessCredit
    publisher: Publisher

    def services(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "dunning": self.dunning, "credit": self.credit}




Expect = Literal["dead", "applied", "either"]


@dataclass(frozen=True)
class Message:
    """One message of a case as it goes on the wire.

    ``key``: None sends it without a key to the partition of the case's customer; ``mentions``:
    a dead letter's reason names one of them (none given: any reason will do)."""

    topic: str
    value: bytes
    key: bytes | None
    expect: Expect
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    customer: str
    messages: tuple[Message, ...]
    # invoices the valid messages leave: invoice id -> (open amount, status)
    applied: dict[str, tuple[str, str]] = field(default_factory=dict)
    fu_open: str | None = None  # the follow-up invoice's open amount if not the usual

    @property
    def topics(self) -> set[str]:
        return {m.topic for m in self.messages}

    @property
    def follow_up_open(self) -> Decimal:
        if self.fu_open is not None:
            return Decimal(self.fu_open)
        return Decimal("60.00") if "ar.payments" in self.topics else Decimal("100.00")

    @property
    def open_total(self) -> Decimal:
        return self.follow_up_open + sum((Decimal(o) for o, _ in self.applied.values()), Decimal(0))


def customer_of(name: str) -> str:
    return f"PZ-{name}"


def with_raw(event: dict[str, Any], path: tuple[str, ...], raw: bytes) -> bytes:
    """The event encoded with the JSON text ``raw`` at ``path`` (what orjson would not write)."""
    marker = "\x00raw\x00"
    target = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = marker
    return encode(event).replace(orjson.dumps(marker), raw)


def deep_json(event: dict[str, Any], path: tuple[str, ...], depth: int) -> bytes:
    """The event with ``depth`` nested arrays at ``path``."""
    return with_raw(event, path, b"[" * depth + b"]" * depth)


def invoice(customer: str, suffix: str, amount: Any = "100.00", *, issue: str = "2024-01-01",
            due: str = "2024-01-31", terms: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    event = invoice_issued(customer, f"{customer}-{suffix}", "0", issue=issue, due=due,
                           event_id=f"inv-{customer}-{suffix}")
    event["data"]["amount"] = amount
    if terms is not None:
        event["data"]["terms"] = terms
    event["data"].update(data)
    return event


def payment(customer: str, suffix: str, amount: Any = "100.00", *, received: str = "2024-01-15",
            allocations: Iterable[tuple[str, Any]] = (), **data: Any) -> dict[str, Any]:
    event = payment_received(customer, f"{customer}-{suffix}", "0", received=received,
                             event_id=f"pay-{customer}-{suffix}")
    event["data"]["amount"] = amount
    allocations = list(allocations)
    if allocations:
        event["data"]["allocations"] = [{"invoice_id": i, "amount": a} for i, a in allocations]
    event["data"].update(data)
    return event


def customer_profile(customer: str, suffix: str, **data: Any) -> dict[str, Any]:
    return profile(customer, event_id=f"cust-{customer}-{suffix}", **data)


OWN_KEY = b""  # a message's key: the case's customer id
NO_KEY = None  # sent without a key (to the partition of the case's customer)


def dead(topic: str, value: bytes | dict[str, Any], *mentions: str, key: bytes | None = OWN_KEY) -> Message:
    raw = value if isinstance(value, bytes) else encode(value)
    return Message(topic, raw, key, "dead", mentions)


def applied(topic: str, event: dict[str, Any]) -> Message:
    return Message(topic, encode(event), OWN_KEY, "applied")


def either(topic: str, value: bytes, *mentions: str) -> Message:
    """Dead-lettered (naming one of ``mentions``) or applied, as long as nothing stops."""
    return Message(topic, value, OWN_KEY, "either", mentions)


def ledger_fact(customer: str, kind: str, **changes: Any) -> dict[str, Any]:
    """An ``ar.ledger.events`` fact shaped as the ledger publishes them, from someone else."""
    invoice_id = f"{customer}-LX"
    data: dict[str, Any] = {"customer_id": customer,
                            "origin": {"source": "erp/rogue", "id": "x", "type": "x"}}
    if kind == "ledger.invoice_opened":
        data |= {"invoice_id": invoice_id, "currency": "EUR", "amount": "400.00", "issue_date": "2024-01-01",
                 "due_date": "2024-01-31", "terms": None, "reference": None, "attributes": {},
                 "effective_date": "2024-01-01",
                 "invoices": [{"invoice_id": invoice_id, "currency": "EUR", "open_amount": "400.00",
                               "settled_date": None, "status": "open"}]}
    elif kind == "ledger.unapplied_cash_changed":
        data |= {"currency": "EUR", "change": "100.00", "effective_date": "2024-01-01",
                 "cause": "CreditReceived"}
    else:
        data |= {"name": f"{customer} Ltd"}
    if "open_amount" in changes:
        data["invoices"][0]["open_amount"] = changes.pop("open_amount")
    data |= changes
    return cloud_event(kind, data, event_id=f"rogue-{customer}", source="rogue/publisher")



def follow_ups(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """Good messages on every topic the case used, under its key (so on the same partitions)."""
    cust = case.customer
    messages = [("ar.invoices", invoice(cust, "FU", "100.00"))]
    if "ar.payments" in case.topics:
        messages.append(("ar.payments", payment(cust, "FUP", "40.00", allocations=[(f"{cust}-FU", "40.00")])))
    if "ar.disputes" in case.topics:
        messages.append(("ar.disputes", dispute_opened(cust, f"{cust}-FUD", f"{cust}-FU", "10.00")))
    if "ar.customers" in case.topics:
        messages.append(("ar.customers", customer_profile(
            cust, "FU", credit_limit={"currency": "EUR", "amount": FOLLOW_UP_LIMIT},
            dunning_policy=FOLLOW_UP_POLICY)))
    return messages



@dataclass
class Outcome:
    """What the module saw: where each message went, the end state, the dead letters."""

    stack: Stack
    cases: list[Case]
    sent: dict[str, list[tuple[Message, int, int]]]  # case -> (message, partition, offset)
    state: dict[str, dict[str, Any]]  # case -> the last snapshot
    settled_in: float | None  # seconds from the first publish; None: not within SETTLE
    letters: list[tuple[ConsumerRecord[bytes, bytes], dict[str, Any]]]
    readiness: dict[str, list[int]]  # service -> statuses seen while the stream went through


async def read(client: Any, path: str) -> Any:
    """The JSON answer; None for 404; the status and text of any other answer (a 500 is a state
    to report, not a reason to stop looking)."""
    try:
        response = await client.get(path)
    except Exception as error:
        return f"{path}: {error!r}"
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        return f"{path}: {response.status_code} {response.text[:300]}"
    return response.json()


async def case_state(stack: Stack, case: Case) -> dict[str, Any]:
    cust = case.customer
    invoices = {i: await read(stack.ledger, f"/invoices/{i}") for i in (f"{cust}-FU", *case.applied)}
    balance = await read(stack.ledger, f"/customers/{cust}/balance?as_of=2030-01-01")
    if isinstance(balance, dict):
        balance = next((b for b in balance["balances"] if b["currency"] == "EUR"), None)
    return {"invoices": invoices, "balance": balance,
            "dunning": await read(stack.dunning, f"/customers/{cust}/dunning"),
            "credit": await read(stack.credit, f"/customers/{cust}/credit")}


def follow_up_in_dunning(case: Case, view: Any) -> dict[str, Any] | None:
    if not isinstance(view, dict):
        return None
    return next((i for i in view["invoices"] if i["invoice_id"] == f"{case.customer}-FU"), None)


def eur_position(view: Any) -> dict[str, Any] | None:
    if not isinstance(view, dict):
        return None
    return next((p for p in view["positions"] if p["currency"] == "EUR"), None)


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def field_of(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else value


def problems(case: Case, state: dict[str, Any]) -> list[str]:
    """What the case's end state lacks (empty: reached)."""
    found: list[str] = []
    fu_open, total = money(case.follow_up_open), money(case.open_total)
    fu = state["invoices"].get(f"{case.customer}-FU")
    if field_of(fu, "open_amount") != fu_open:
        found.append(f"ledger: follow-up invoice open {field_of(fu, 'open_amount')!r}, expected {fu_open}")
    for invoice_id, expected in case.applied.items():
        got = state["invoices"].get(invoice_id)
        if (field_of(got, "open_amount"), field_of(got, "status")) != expected:
            found.append(f"ledger: {invoice_id} is {got!r}, expected (open, status) {expected}")
    balance = state["balance"]
    if (field_of(balance, "open_amount"), field_of(balance, "unapplied_cash")) != (total, "0.00"):
        found.append(f"ledger: EUR balance {balance!r}, expected open {total} and no unapplied cash")
    listed = follow_up_in_dunning(case, state["dunning"])
    if field_of(listed, "open_amount") != fu_open:
        found.append(f"dunning: follow-up invoice {listed!r} (view {str(state['dunning'])[:200]}), "
                     f"expected open {fu_open}")
    position = eur_position(state["credit"])
    if field_of(position, "exposure") != total:
        found.append(f"credit: EUR position {position!r} (view {str(state['credit'])[:200]}), "
                     f"expected exposure {total}")
    if "ar.customers" in case.topics:
        if field_of(position, "limit") != FOLLOW_UP_LIMIT:
            found.append(f"credit: limit {field_of(position, 'limit')!r}, expected {FOLLOW_UP_LIMIT}")
        if field_of(state["dunning"], "policy") != FOLLOW_UP_POLICY:
            policy = field_of(state["dunning"], "policy")
            found.append(f"dunning: policy {policy!r}, expected {FOLLOW_UP_POLICY}")
    return found


async def watch_readiness(stack: Stack, seen: dict[str, list[int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name, service in stack.services().items():
            try:
                status = (await service.http.get("/health/ready", timeout=5.0)).status_code
            except Exception:  # a service that does not answer is as bad as a 503
                status = -1
            seen[name].append(status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


async def publish(stack: Stack, cases: list[Case]) -> dict[str, list[tuple[Message, int, int]]]:
    """Every case's messages, then every follow-up, pipelined; the acks give (partition, offset)."""
    producer = stack.publisher.producer
    pending: list[tuple[str, Message | None, Any]] = []
    for case in cases:
        own = case.customer.encode()
        for message in case.messages:
            key = own if message.key == OWN_KEY else message.key
            future = await producer.send(message.topic, value=message.value, key=key,
                                         partition=partition_of(own))
            pending.append((case.name, message, future))
    for case in cases:
        own = case.customer.encode()
        for topic, event in follow_ups(case):
            future = await producer.send(topic, value=encode(event), key=own, partition=partition_of(own))
            pending.append((case.name, None, future))
    sent: dict[str, list[tuple[Message, int, int]]] = {case.name: [] for case in cases}
    for name, message, future in pending:
        metadata = await future
        if message is not None:
            sent[name].append((message, metadata.partition, metadata.offset))
    return sent


def consumers(message: Message) -> tuple[str, ...]:
    """The services that read ``message``: a ledger type a service does not read it skips unread."""
    if message.topic != LEDGER_EVENTS:
        return CONSUMERS[message.topic]
    try:
        kind = orjson.loads(message.value).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        kind = None
    readers = (("dunning", DunningApplication.reads), ("credit", CreditApplication.reads))
    return tuple(service for service, reads in readers if reads is None or not isinstance(kind, str)
                 or kind in reads or not kind.startswith("ledger."))


def expected_letters(sent: dict[str, list[tuple[Message, int, int]]]) -> set[tuple[str, str, int, int]]:
    return {(service, m.topic, p, o) for messages in sent.values() for m, p, o in messages
            if m.expect == "dead" for service in consumers(m)}


def letter_origin(letter: dict[str, Any]) -> tuple[str, str, int, int]:
    data = letter["data"]
    return (letter["source"].removeprefix("receivables/"), data["topic"], data["partition"], data["offset"])


async def read_letters(bootstrap: str, wanted: set[tuple[str, str, int, int]]
                       ) -> list[tuple[ConsumerRecord[bytes, bytes], dict[str, Any]]]:
    def complete(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return wanted <= {letter_origin(orjson.loads(r.value)) for r in records}

    try:
        records = await read_topic(bootstrap, DEADLETTER_TOPIC, until=complete, timeout=20.0)
    except AssertionError:  # what is there: each case says what it misses
        records = await read_topic(bootstrap, DEADLETTER_TOPIC, timeout=20.0)
    return [(r, orjson.loads(r.value)) for r in records]




async def run_stream(stack: Stack, cases: list[Case]) -> Outcome:
    """Publish the cases' messages and follow-ups in one go, wait for the end state (or the
    deadline), and gather what every case is checked against."""
    readiness: dict[str, list[int]] = {name: [] for name in stack.services()}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_readiness(stack, readiness, stop))
    try:
        started = time.monotonic()
        sent = await publish(stack, cases)
        state: dict[str, dict[str, Any]] = {}
        waiting = list(cases)
        deadline = started + SETTLE
        settled_in: float | None = None
        while True:
            still = []
            for case in waiting:
                state[case.name] = await case_state(stack, case)
                if problems(case, state[case.name]):
                    still.append(case)
            waiting = still
            if not waiting:
                settled_in = time.monotonic() - started
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
        letters = await read_letters(stack.broker.bootstrap, expected_letters(sent))
    finally:
        stop.set()
        await watcher
    took = f"{settled_in:.1f}s" if settled_in is not None else f"more than {SETTLE:.0f}s"
    print(f"\n[{stack.name}] {len(cases)} cases settled in {took}")
    return Outcome(stack, cases, sent, state, settled_in, letters, readiness)




def check_letter(case: Case, message: Message, partition: int, offset: int, service: str,
                 letters: list[tuple[ConsumerRecord[bytes, bytes], dict[str, Any]]]) -> None:
    origin = (service, message.topic, partition, offset)
    mine = [(r, e) for r, e in letters if letter_origin(e) == origin]
    assert mine, f"{case.name}: no dead letter from {service} for {message.topic}[{partition}]@{offset}"
    key = case.customer.encode() if message.key == OWN_KEY else message.key
    for record, letter in mine:
        assert letter["type"] == "deadletter.rejected" and letter["specversion"] == "1.0", letter["type"]
        assert len(record.value) <= MAX_DEADLETTER_BYTES, f"a dead letter of {len(record.value)} bytes"
        reason = letter["data"]["reason"]
        assert isinstance(reason, str) and reason.strip(), f"{case.name}: empty reason"
        if message.mentions:
            assert any(m in reason for m in message.mentions), \
                f"{case.name} ({service}): reason {reason[:300]!r} names none of {message.mentions}"
        # the key, and the subject only when there is a key (never an empty one)
        assert letter.get("subject") != "", f"{case.name}: a dead letter with an empty subject"
        if key is None:
            assert "subject" not in letter, f"{case.name}: subject {letter.get('subject')!r} without a key"
            assert letter["data"]["key"] is None and record.key is None
        else:
            assert letter["subject"] == key.decode("utf-8", "replace") == letter["data"]["key"]
            assert record.key == key
        # the original, whole or cut with its size and digest
        original = base64.b64decode(letter["data"]["original"])
        if letter["data"].get("original_truncated"):
            assert letter["data"]["original_size"] == len(message.value)
            assert letter["data"]["original_sha256"] == hashlib.sha256(message.value).hexdigest()
            assert len(original) < len(message.value) and message.value.startswith(original)
        else:
            assert original == message.value, f"{case.name}: the original is not the message sent"




def check_case(outcome: Outcome, name: str) -> None:
    """One case of a stream: each poison message dead-lettered by every service consuming its
    topic (the valid ones not), and the follow-ups in all three services."""
    case = next(c for c in outcome.cases if c.name == name)
    for message, partition, offset in outcome.sent[name]:
        for service in consumers(message):
            origin = (service, message.topic, partition, offset)
            lettered = any(letter_origin(e) == origin for _, e in outcome.letters)
            if message.expect == "dead" or (message.expect == "either" and lettered):
                check_letter(case, message, partition, offset, service, outcome.letters)
            elif message.expect == "applied":
                reasons = [e["data"]["reason"] for _, e in outcome.letters if letter_origin(e) == origin]
                assert not reasons, f"{name}: a valid message was dead-lettered by {service}: {reasons}"
    found = problems(case, outcome.state[name])
    assert not found, f"{name} [{outcome.stack.name}] not reached in {SETTLE:.0f}s:\n  " + "\n  ".join(found)


def check_settled(outcome: Outcome) -> None:
    """The whole stream reached its end state in time, and the services were ready throughout."""
    assert outcome.settled_in is not None, (
        f"{sum(1 for c in outcome.cases if problems(c, outcome.state[c.name]))} of {len(outcome.cases)} "
        f"cases did not reach their end state within {SETTLE:.0f}s")
    for service, statuses in outcome.readiness.items():
        assert statuses, f"{service}: readiness never asked"
        assert set(statuses) == {200}, f"{service}: /health/ready answered {sorted(set(statuses))}"


def selected_cases(request: pytest.FixtureRequest, cases: list[Case]) -> list[Case]:
    """The cases ``-k`` picked (all of them if it picked none)."""
    selected = {getattr(item, "callspec", None) and item.callspec.params.get("name")
                for item in request.session.items}
    return [case for case in cases if case.name in selected] or cases


async def assert_ready(stack: Stack) -> None:
    for name, service in stack.services().items():
        response = await service.http.get("/health/ready")
        assert response.status_code == 200, (name, response.text)


async def applied_ids(stack: Stack, customer: str) -> set[str]:
    """The ids of every inbound message the ledger applied for the customer (its audit trail)."""
    found = await read(stack.ledger, f"/audit/customers/{customer}?limit=10000")
    if not isinstance(found, dict):
        return set()
    return {e["message"]["id"] for e in found["events"] if e["message"]}


def money_invariant(database_url: str, customers: Iterable[str]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """From the event store: each customer's totals per currency, after checking that
    invoiced - credited - written off - discounts - received = open - unapplied."""
    from services.ledger.application import LedgerApplication
    from shared.eventstore import eventsourcing_env

    app = LedgerApplication(env=eventsourcing_env(database_url, cache_size=None))
    try:
        totals = {}
        for customer in customers:
            account = app.account(customer)
            if account is None:
                continue
            for currency in account.currencies():
                t = account.totals(currency)
                assert (t["invoiced"] - t["credited"] - t["written_off"] - t["discounts"] - t["received"]
                        == t["open"] - t["unapplied"]), (customer, currency, t)
                assert t["open"] >= 0 and t["unapplied"] >= 0, (customer, currency, t)
                totals[(customer, currency)] = t
        return totals
    finally:
        app.close()


async def aging_by_customer(stack: Stack, as_of: str | None) -> Any:
    """``GET /aging`` grouped by customer: ``{(customer, currency): (total, unapplied)}``, or the
    error it answered."""
    query = "/aging?group_by=customer&limit=10000" + (f"&as_of={as_of}" if as_of else "")
    found = await read(stack.ledger, query)
    if not isinstance(found, dict):
        return found
    return {(r["customer_id"], r["currency"]): (Decimal(r["total"]), Decimal(r["unapplied_cash"]))
            for r in found["rows"]}


async def read_models_agree(stack: Stack, totals: dict[tuple[str, str], dict[str, Decimal]],
                            aging_as_of: str | None = "2999-12-31") -> list[str]:
    """Where the ledger's read models (balance and open items over REST, the ``ledger_balances``
    table, the aging by customer), dunning or credit differ from the event store's totals."""
    found = []
    rows = await asyncio.to_thread(balance_rows, stack.database_url)
    aging = await aging_by_customer(stack, aging_as_of)
    if not isinstance(aging, dict):
        found.append(f"aging by customer answered {aging}")
    by_customer: dict[str, dict[str, dict[str, Decimal]]] = {}
    for (customer, currency), t in totals.items():
        by_customer.setdefault(customer, {})[currency] = t
    for customer, currencies in by_customer.items():
        balance = await read(stack.ledger, f"/customers/{customer}/balance?as_of=2999-12-31")
        items = await read(stack.ledger, f"/customers/{customer}/open-items?as_of=2999-12-31")
        dunning = await read(stack.dunning, f"/customers/{customer}/dunning")
        credit = await read(stack.credit, f"/customers/{customer}/credit")
        for currency, t in currencies.items():
            want = (t["open"], t["unapplied"])
            row = next((b for b in field_of(balance, "balances") or [] if b["currency"] == currency), None)
            got = (Decimal(row["open_amount"]), Decimal(row["unapplied_cash"])) if row else (Decimal(0),) * 2
            if got != want:
                found.append(f"{customer} {currency}: balance {balance if row is None else row}, "
                             f"event store (open, unapplied) {want}")
            table = rows.get((customer, currency))
            got = (table["open_amount"], table["unapplied_cash"]) if table else (Decimal(0),) * 2
            if got != want:
                found.append(f"{customer} {currency}: ledger_balances {got}, event store {want}")
            if isinstance(aging, dict) and aging.get((customer, currency), (Decimal(0),) * 2) != want:
                found.append(f"{customer} {currency}: aging {aging.get((customer, currency))}, "
                             f"event store {want}")
            listed = sum((Decimal(i["open_amount"]) for i in field_of(items, "open_items") or []
                          if i["currency"] == currency), Decimal(0))
            if listed != want[0]:
                found.append(f"{customer} {currency}: open items add up to {listed} ({str(items)[:200]}), "
                             f"event store {want[0]}")
            dunned = sum((Decimal(i["open_amount"]) for i in field_of(dunning, "invoices") or []
                          if i["currency"] == currency), Decimal(0))
            if dunned != want[0]:
                found.append(f"{customer} {currency}: dunning sees {dunned} open ({str(dunning)[:200]}), "
                             f"event store {want[0]}")
            positions = field_of(credit, "positions") or []
            position = next((p for p in positions if p["currency"] == currency), None)
            exposure = Decimal(position["open_receivables"]) if position else Decimal(0)
            if exposure != want[0]:
                found.append(f"{customer} {currency}: credit sees {exposure} open ({str(credit)[:200]}), "
                             f"event store {want[0]}")
    return found
