"""Event stores written by the previous code load and replay identically with the current code.

The fixture (``tests/data/previous_stores``, written by ``write_stores.py`` at commit b96bfc3,
before dunning and credit kept the shared ``OpenItems`` mirror and took typed facts) holds the
ledger's, dunning's and credit's SQLite event stores of a seven-customer book that uses every
event class of the three services, the raw messages dunning and credit consumed, and
``expected.json``: what the previous code showed.

Each test runs on a copy of the stores: the SQLite files as written, and the same rows copied
into a fresh PostgreSQL database (``insert_events`` of each application's recorder, in the
order of the SQLite notification log). Only stable entry points are used: the three
applications, ``eventsourcing_env``, the aggregates' ``view()``, ``receivables replay`` (the
CLI) for the read models, whose tables are then read by name.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from sqlalchemy import text

from services import cli
from services.credit.application import CreditApplication
from services.dunning.application import DunningApplication
from services.ledger.application import LedgerApplication
from shared.db import make_engine, read_models_url
from shared.erp_events import InvalidMessage
from shared.eventstore import TrackedApplication, eventsourcing_env
from shared.ledger_feed import decode
from shared.testing import empty_database

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "previous_stores"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
MESSAGES: list[dict[str, str]] = json.loads((FIXTURE / "ledger_messages.json").read_text())
CUSTOMERS = sorted(EXPECTED["customers"])
VIEW_AS_OF = date.fromisoformat(EXPECTED["view_as_of"])
SERVICES = ("ledger", "dunning", "credit")
APPS: dict[str, type[TrackedApplication]] = {
    "ledger": LedgerApplication, "dunning": DunningApplication, "credit": CreditApplication}


@dataclass
class Stores:
    backend: str
    urls: dict[str, str]  # service -> its event store's URL

    def open(self, service: str) -> Any:
        return APPS[service](env=eventsourcing_env(self.urls[service]))


def _sqlite_rows(path: Path) -> list[StoredEvent]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT originator_id, originator_version, topic, state FROM stored_events "
                            "ORDER BY rowid").fetchall()
    return [StoredEvent(originator_id=UUID(row[0]), originator_version=row[1], topic=row[2], state=row[3])
            for row in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The fixture's stores, copied: SQLite files, or the same rows in a fresh PostgreSQL database."""
    if request.param == "sqlite":
        urls = {}
        for service in SERVICES:
            shutil.copy(FIXTURE / f"{service}.sqlite", tmp_path / f"{service}.sqlite")
            urls[service] = f"sqlite:///{tmp_path / f'{service}.sqlite'}"
        yield Stores("sqlite", urls)
        return
    for url in empty_database(request, tmp_path):  # (a generator: dropped after the test)
        # One database, as the services share one on PostgreSQL: each application's tables
        # are named after it (ledger_events, dunning_events, credit_events).
        for service in SERVICES:
            app = APPS[service](env=eventsourcing_env(url))
            try:
                app.recorder.insert_events(_sqlite_rows(FIXTURE / f"{service}.sqlite"))
            finally:
                app.close()
        yield Stores("postgres", dict.fromkeys(SERVICES, url))


def _all_events(app: TrackedApplication) -> list[Any]:
    notifications = app.recorder.select_notifications(1, 10_000)
    return [app.mapper.to_domain_event(n) for n in notifications]


def _state(value: Any) -> Any:
    """An object's whole state as plain values (aggregates, dataclasses, slotted classes)."""
    if isinstance(value, dict):
        return {k: _state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_state(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_state(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _state(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {"__class__": type(value).__qualname__, **_state(vars(value))}
    slots = getattr(type(value), "__slots__", None)
    if slots and not isinstance(value, str | bytes):
        return {"__class__": type(value).__qualname__, **{s: _state(getattr(value, s)) for s in slots}}
    return value


def ledger_figures(account: Any) -> dict[str, Any]:
    """What ``write_stores.py`` recorded of a ledger account (its public attributes)."""
    return {
        "totals": {c: {k: str(v) for k, v in account.totals(c).items()}
                   for c in sorted(account.currencies())},
        "invoices": {i.invoice_id: {"currency": i.currency, "amount": str(i.amount),
                                    "open_amount": str(i.open_amount), "status": i.status,
                                    "settled_date": i.settled_date.isoformat() if i.settled_date else None,
                                    "written_off": str(i.written_off),
                                    "discount_taken": str(i.discount_taken),
                                    "disputed_amount": str(i.disputed_amount), "cancelled": i.cancelled}
                     for i in sorted(account.invoices.values(), key=lambda i: i.invoice_id)},
        "credits": {c.key: {"kind": c.kind, "currency": c.currency, "amount": str(c.amount),
                            "remaining": str(c.remaining), "void": c.void}
                    for c in sorted(account.credits.values(), key=lambda c: c.key)},
        "profile": account.profile,
    }


# --------------------------------------------------------------------------- the fixture itself


def test_the_fixture_uses_every_event_class_of_the_three_services() -> None:
    topics = {service: {t.rsplit(":", 1)[1] for t, _ in EXPECTED["stores"][service]["topics"]}
              for service in SERVICES}
    assert topics["ledger"] == {f"CustomerAccount.{name}" for name in (
        "Opened", "InvoiceIssued", "InvoiceAdjusted", "InvoiceCancelled", "InvoiceWrittenOff",
        "CreditReceived", "PaymentReversed", "DisputeOpened", "DisputeResolved", "MessageAcknowledged",
        "ProfileUpdated")}
    assert topics["dunning"] == {f"DunningAccount.{name}" for name in (
        "Opened", "ProfileUpdated", "InvoiceOpened", "OpenAmountsChanged", "DisputeOpened", "DisputeClosed",
        "PromiseMade", "PromiseKept", "PromiseBroken", "NoticeIssued")} | {
        "PolicyBook.Opened", "PolicyBook.PolicyStored", "RunRegistry.Opened", "RunRegistry.RunRecorded"}
    assert topics["credit"] == {f"CreditAccount.{name}" for name in (
        "Opened", "InvoiceOpened", "OpenAmountsChanged", "DisputeOpened", "DisputeClosed",
        "UnappliedCashChanged", "LimitSet", "LimitExpired", "LimitReviewDue", "CreditChecked",
        "ReservationsExpired", "OverdueMarked", "RiskGradeChanged", "HoldPlaced", "HoldReasonsChanged",
        "HoldReleased", "OverridesLapsed")} | {
        "ReviewRegistry.Opened", "ReviewRegistry.ReviewRecorded"}
    views = {c: EXPECTED["customers"][c]["dunning"] for c in CUSTOMERS}
    assert any(n["escalate"] for v in views.values() for n in v["notices"])
    assert {p["status"] for v in views.values() for p in v["promises"]} == {"kept", "broken"}


# --------------------------------------------------------------------------- loading


def test_every_stored_event_deserialises(stores: Stores) -> None:
    for service in SERVICES:
        app = stores.open(service)
        try:
            events = _all_events(app)
            counts = Counter(f"{type(e).__module__}:{type(e).__qualname__}" for e in events)
            assert sorted(counts.items()) == [tuple(pair) for pair in EXPECTED["stores"][service]["topics"]]
            assert len(events) == EXPECTED["stores"][service]["events"]
            for aggregate_id in {e.originator_id for e in events}:  # and aggregate by aggregate
                versions = [e.originator_version for e in app.events.get(aggregate_id)]
                assert versions == list(range(1, len(versions) + 1))
        finally:
            app.close()


def dunning_view(account: Any) -> dict[str, Any]:
    """A dunning account's view as the previous code showed it: the members added since (no
    collector is assigned in an old store) checked and left out."""
    view: dict[str, Any] = account.view()
    assert (view.pop("collector_id"), view.pop("assigned_by")) == (None, None)
    return view


def credit_view(account: Any, rules: Any) -> dict[str, Any]:
    """A credit account's view as the previous code showed it: the members added since (an
    old store has no securities: nothing secured; no ledger prediction) checked and left out."""
    view: dict[str, Any] = account.view(as_of=VIEW_AS_OF, rules=rules)
    added = (view.pop("securities"), view.pop("cover_on"), view.pop("ratings"), view.pop("prediction"))
    assert added == ([], VIEW_AS_OF.isoformat(), [], None)
    for position in view["positions"]:
        assert (position.pop("secured_amount"), position.pop("unsecured_exposure")) == (
            "0.00", position["exposure"])
    return view


def test_each_account_loads_and_shows_what_the_previous_code_showed(stores: Stores) -> None:
    ledger, dunning, credit = (stores.open(s) for s in SERVICES)
    try:
        for customer in CUSTOMERS:
            expected = EXPECTED["customers"][customer]
            assert dunning_view(dunning.account(customer)) == expected["dunning"], customer
            assert credit_view(credit.account(customer), credit.rules) == expected["credit"], customer
            assert ledger_figures(ledger.account(customer)) == expected["ledger"], customer
        # The cancelled invoice was dunned (level 2) before it was cancelled, so the view shows
        # it: its open amount is 0.00 now as it was then (the ledger's fact said "0" for a
        # cancelled invoice, and the previous dunning account took that amount as it came).
        c6 = {i["invoice_id"]: i for i in dunning.account("C6").view()["invoices"]}
        assert (c6["C6-I3"]["open_amount"], c6["C6-I3"]["level"]) == ("0.00", 2)
        assert ledger.account("C6").invoices["C6-I3"].status == "cancelled"
    finally:
        for app in (ledger, dunning, credit):
            app.close()


def test_replaying_each_aggregate_event_by_event_gives_what_the_repository_loads(stores: Stores) -> None:
    for service in SERVICES:
        app = stores.open(service)
        try:
            ids = {e.originator_id for e in _all_events(app)}
            for aggregate_id in ids:
                replayed: Any = None
                for event in app.events.get(aggregate_id):
                    replayed = event.mutate(replayed)
                loaded = app.repository.get(aggregate_id)
                assert _state(replayed) == _state(loaded), (service, aggregate_id)
                if hasattr(loaded, "view"):
                    assert replayed.view() == loaded.view()
        finally:
            app.close()


# --------------------------------------------------------------------------- redeliveries


def _current_facts() -> tuple[list[Any], list[dict[str, str]]]:
    facts, refused = [], []
    for message in MESSAGES:
        try:
            facts.append(decode(message["value"].encode(), topic=message["topic"],
                                key=message["key"].encode()))
        except InvalidMessage as error:
            refused.append({**message, "reason": error.reason})
    return facts, refused


def test_the_current_decoder_reads_the_stored_messages_as_the_previous_one_did() -> None:
    facts, refused = _current_facts()
    # The one message the previous decoder dead-lettered is refused today for the same reason:
    # the previous ledger published the reversal of a payment that paid nothing with currency
    # "" (its stored PaymentReversed does not name the currency; the current ledger records it).
    assert refused == EXPECTED["dead_letters"]
    assert len(facts) + len(refused) == len(MESSAGES)
    assert all(f.known for f in facts)


def test_the_same_ledger_messages_again_change_nothing(stores: Stores) -> None:
    """Every message again, decoded by the current code: no account records anything.

    (The previous dunning account kept no settled dates, and took a ``ledger.invoice_settled``
    after the payment that settled the invoice as no news, without moving its position: that
    fact again is past the position, and must still be no news although it names a settled
    date the stored events never recorded. See ``OpenItem.settled_known``.)
    """
    facts, _ = _current_facts()
    for service in ("dunning", "credit"):
        app = stores.open(service)
        try:
            batch = app.prepare(facts)
            assert batch.refusals == [] and batch.applied == 0, (service, batch.applied)
            assert batch.duplicates == len(facts)
            assert [e for a in batch.accounts.values() for e in a.pending_events] == []
            for customer, account in batch.accounts.items():
                if service == "dunning":
                    assert dunning_view(account) == EXPECTED["customers"][customer]["dunning"]
                else:
                    assert credit_view(account, app.rules) == EXPECTED["customers"][customer]["credit"]
            app.discard(batch)
        finally:
            app.close()


# --------------------------------------------------------------------------- read models


def _replay(service: str, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"RECEIVABLES_{service.upper()}_DATABASE_URL", stores.urls[service])
    assert cli.main(["replay", service]) == 0


def _money(stored: Any) -> Decimal | None:
    """A read model's money column read raw: an integer of 1/10,000 (``shared.db.Money``)."""
    return None if stored is None else Decimal(stored).scaleb(-4)


def _rows(url: str, query: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)))
    finally:
        engine.dispose()


def test_read_models_rebuilt_from_the_stores_agree(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    for service in SERVICES:
        _replay(service, stores, monkeypatch)

    # dunning: every invoice its views show, its open and disputed amounts and level
    rows = {r.invoice_id: r for r in _rows(stores.urls["dunning"], "SELECT * FROM dunning_invoices")}
    shown = 0
    for customer in CUSTOMERS:
        view = EXPECTED["customers"][customer]["dunning"]
        for invoice in view["invoices"]:
            row = rows[invoice["invoice_id"]]
            assert (row.customer_id, _money(row.open_amount), _money(row.disputed_amount), row.level,
                    bool(row.escalated)) == (
                customer, Decimal(invoice["open_amount"]), Decimal(invoice["disputed_amount"]),
                invoice["level"], invoice["escalated"]), invoice
            shown += 1
        accounts = _rows(stores.urls["dunning"], "SELECT last_run_on, do_not_dun FROM dunning_accounts "
                         f"WHERE customer_id = '{customer}'")
        assert [(str(a.last_run_on), bool(a.do_not_dun)) for a in accounts] == [
            (str(view["last_run_on"]), view["do_not_dun"])]
    assert shown >= 10
    notices = _rows(stores.urls["dunning"], "SELECT notice_id FROM dunning_notices")
    assert sorted(n.notice_id for n in notices) == sorted(
        n["notice_id"] for c in CUSTOMERS for n in EXPECTED["customers"][c]["dunning"]["notices"])

    # credit: the positions (exposure, open receivables, reserved, limit) and holds
    credit_url = read_models_url(stores.urls["credit"])
    positions = {(r.customer_id, r.currency): r for r in _rows(credit_url, "SELECT * FROM credit_positions")}
    for customer in CUSTOMERS:
        view = EXPECTED["customers"][customer]["credit"]
        for position in view["positions"]:
            row = positions[customer, position["currency"]]
            assert (_money(row.exposure), _money(row.open_receivables), _money(row.reserved)) == (
                Decimal(position["exposure"]), Decimal(position["open_receivables"]),
                Decimal(position["reserved"])), (customer, position)
            assert _money(row.limit_amount) == (Decimal(position["limit"]) if position["limit"] else None)
        account = _rows(credit_url, f"SELECT on_hold FROM credit_accounts WHERE customer_id = '{customer}'")
        assert [bool(a.on_hold) for a in account] == [view["on_hold"]], customer

    # ledger: balances per customer and currency, and every invoice's open amount and status
    balances = {(r.customer_id, r.currency): r
                for r in _rows(stores.urls["ledger"], "SELECT * FROM ledger_balances")}
    invoices = {r.invoice_id: r for r in _rows(stores.urls["ledger"], "SELECT * FROM ledger_invoices")}
    for customer in CUSTOMERS:
        figures = EXPECTED["customers"][customer]["ledger"]
        for currency, totals in figures["totals"].items():
            row = balances[customer, currency]
            assert (_money(row.open_amount), _money(row.disputed_amount), _money(row.unapplied_cash)) == (
                Decimal(totals["open"]), Decimal(totals["disputed"]), Decimal(totals["unapplied"])), (
                customer, currency)
        for invoice_id, invoice in figures["invoices"].items():
            row = invoices[invoice_id]
            assert (_money(row.open_amount), row.status) == (
                Decimal(invoice["open_amount"]), invoice["status"]), invoice_id
