"""The ledger's read models and the projector that keeps them.

Tables (plain SQL, indexed for the REST queries):
- ``ledger_invoices``: every invoice as it stands now;
- ``ledger_movements``: every change of an invoice's open amount, disputed amount or the
  customer's unapplied cash, with its effective date and the instant it was recorded; as-of
  and known-at answers are sums over it;
- ``ledger_balances``: per customer and currency, the current totals;
- ``ledger_disputes``, ``ledger_customers``;
- ``ledger_prepayments``: every prepayment request, and ``ledger_prepayment_credits`` the
  payments held for each (what became of their money is in their movements);
- ``ledger_replays``: every replay of these read models, who asked and how it ended (from
  the ``ReplayRun`` records in the event store, see ``services.ledger.replay.runs``);
- ``ledger_projection_positions``: how far each projector has read the notification log,
  updated in the same transaction as the rows. It is bookkeeping, not a read model: a
  replay builds the others into shadow tables (``ReadModels``) and switches them in.

The projector reads each notification's stored state itself (one JSON decode, no domain
event object): it only needs the state, the event's name and the recorded instant.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    quoted_name,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from services.ledger.read.disputed import shown_disputed
from shared.db import Money, insert_rows, upsert
from shared.eventstore import TrackedApplication
from shared.money import ZERO

metadata = MetaData()

invoices = Table(
    "ledger_invoices", metadata,
    Column("invoice_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("open_amount", Money, nullable=False),
    Column("disputed_raw", Money, nullable=False),  # open disputes; shown capped at open_amount
    Column("written_off", Money, nullable=False),
    Column("discount_taken", Money, nullable=False),
    Column("status", String(20), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("settled_date", Date),
    Column("reference", String(200)),
    Column("attributes", JSON, nullable=False),
    Column("terms", JSON),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # the earliest and latest effective dates of the invoice's movements: as of a date after
    # the last, the invoice is the row itself; before the first, nothing (see aging.py)
    Column("first_effective", Date, nullable=False),
    Column("last_effective", Date, nullable=False),
    Index("ix_ledger_invoices_customer_id", "customer_id"),
)

movements = Table(
    "ledger_movements", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("position", BigInteger, nullable=False),  # notification id of the event
    Column("customer_id", String(200), nullable=False),
    Column("invoice_id", String(200)),
    Column("currency", String(3), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("open_delta", Money, nullable=False),
    Column("disputed_delta", Money, nullable=False),
    Column("unapplied_delta", Money, nullable=False),
    Column("due_date", Date),
    Column("effective_date", Date, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("credit", String(220)),
    Column("reference", String(200)),  # a refund's id (its movements name the credits it took)
    Index("ix_ledger_movements_customer_date", "customer_id", "effective_date"),
    Index("ix_ledger_movements_invoice", "invoice_id"),
    Index("ix_ledger_movements_date", "effective_date"),
    # a customer's movements in the order recorded, with what the payment predictions read of
    # them: on PostgreSQL an index-only scan, not one heap page fetched per movement (most of
    # the read of a customer with hundreds of invoices)
    Index("ix_ledger_movements_customer_position", "customer_id", "position", "id",
          postgresql_include=["invoice_id", "kind", "open_delta", "disputed_delta", "effective_date",
                              "recorded_at"]),
)

balances = Table(
    "ledger_balances", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("open_amount", Money, nullable=False),
    Column("disputed_amount", Money, nullable=False),
    Column("unapplied_cash", Money, nullable=False),
)

disputes = Table(
    "ledger_disputes", metadata,
    Column("dispute_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("invoice_id", String(200), nullable=False),
    Column("amount", Money, nullable=False),
    Column("status", String(20), nullable=False),
    Column("opened_date", Date, nullable=False),
    Column("resolved_date", Date),
    Index("ix_ledger_disputes_invoice_id", "invoice_id"),
)

customers = Table(
    "ledger_customers", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("name", String(400)),
    Column("profile", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

prepayments = Table(
    "ledger_prepayments", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("request_id", String(200), primary_key=True),  # (a customer's own: another may reuse it)
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("requested_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("order_id", String(200)),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("cancelled_date", Date),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", String(4000)),
    Index("ix_ledger_prepayments_request_id", "request_id"),
)

# the payments held for a request (tagged when received, or when the request came after
# them): what became of them is in their movements (``credit``)
prepayment_credits = Table(
    "ledger_prepayment_credits", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("credit", String(220), primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_ledger_prepayment_credits_request_id", "request_id"),
)

replays = Table(
    "ledger_replays", metadata,
    Column("run_id", String(36), primary_key=True),
    Column("requested_by", String(200), nullable=False),
    Column("via", String(20), nullable=False),  # cli | api
    Column("verify", Boolean, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),  # running | switched | failed
    Column("finished_at", DateTime(timezone=True)),
    Column("position", BigInteger),  # the notification id at which the rebuilt tables were switched in
    Column("events", BigInteger),
    Column("milliseconds", BigInteger),
    Column("detail", String(2000)),
)

positions = Table(
    "ledger_projection_positions", metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

_CREDIT_KINDS = {"payment": "payment_received", "credit_note": "credit_note_issued",
                 "dispute_credit": "dispute_credited"}

SHADOW_SCHEMA = "ledger_replay"  # PostgreSQL: where a replay builds (same table and index names)
SHADOW_PREFIX = "replay_"  # SQLite (one namespace): shadow tables and indexes carry this prefix


@dataclass(frozen=True)
class ReadModels:
    """One complete set of the read-model tables: the live ones, or a replay's shadow copies."""

    invoices: Table
    movements: Table
    balances: Table
    disputes: Table
    customers: Table
    replays: Table
    prepayments: Table
    prepayment_credits: Table

    @property
    def tables(self) -> tuple[Table, ...]:
        return (self.invoices, self.movements, self.balances, self.disputes, self.customers, self.replays,
                self.prepayments, self.prepayment_credits)


LIVE = ReadModels(invoices, movements, balances, disputes, customers, replays, prepayments,
                  prepayment_credits)


@functools.cache
def shadow_read_models(dialect_name: str) -> ReadModels:
    """Copies of the live tables for a replay to build into, of the same shape.

    PostgreSQL: the same names in the schema ``ledger_replay`` (a table moves to another
    schema with its indexes, constraints and owned sequence, names unchanged). SQLite has
    one namespace for tables and indexes, so there every name gets the ``replay_`` prefix.
    """
    shadow = MetaData()
    copies = []
    for table in LIVE.tables:
        if dialect_name == "postgresql":
            copies.append(table.to_metadata(shadow, schema=SHADOW_SCHEMA))
        else:
            copy = table.to_metadata(shadow, name=SHADOW_PREFIX + table.name)
            for index in copy.indexes:
                index.name = quoted_name(SHADOW_PREFIX + str(index.name), None)
            copies.append(copy)
    return ReadModels(*copies)


def _d(text: str) -> date:
    return date.fromisoformat(text)


# A decoded notification: (notification id, event name, stored state with the recorded instant
# under "timestamp" as a datetime).
Decoded = tuple[int, str, dict[str, Any]]


class EventDecoder:
    """Stored events to (position, name, state), without building domain event objects.

    The state is what the application's mapper would give the event's ``__init__`` (the
    library's transcoder, after any cipher and compressor); events of a class that is
    upcast (``class_version``) go through the mapper itself.
    """

    def __init__(self, app: TrackedApplication) -> None:
        self.mapper = app.mapper
        self.direct = self.mapper.cipher is None and self.mapper.compressor is None
        self.decode_state = self.mapper.transcoder.decode
        self.names: dict[str, str | None] = {}  # topic -> event name (None: use the mapper)

    def __call__(self, notifications: Sequence[Notification]) -> list[Decoded]:
        names, decode_state = self.names, self.decode_state
        decoded = []
        for n in notifications:
            name = names.get(n.topic, "") if self.direct else None
            if name == "":
                name = names[n.topic] = self._name(n.topic)
            if name is not None:
                state = decode_state(n.state)
                if "class_version" not in state:
                    decoded.append((n.id, name, state))
                    continue
            event = self.mapper.to_domain_event(n)
            decoded.append((n.id, type(event).__name__, dict(event.__dict__)))
        return decoded

    @staticmethod
    def _name(topic: str) -> str | None:
        cls = resolve_topic(topic)
        return None if getattr(cls, "class_version", 1) != 1 else str(cls.__name__)


class _Batch:
    """The rows one batch of events touches, loaded once and written back in bulk."""

    def __init__(self, conn: Connection, models: ReadModels, events: list[Decoded]) -> None:
        self.conn = conn
        self.models = models
        self.movements: list[dict[str, Any]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.unapplied: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        invoice_ids: set[str] = set()
        dispute_ids: set[str] = set()
        issued: set[str] = set()
        run_ids: set[str] = set()
        request_ids: set[tuple[str, str]] = set()  # (customer, request id)
        reversed_payments: set[tuple[str, str]] = set()  # (customer, credit key)
        for _, name, state in events:
            invoice_ids.update(state.get("touched", ()))
            if "invoice_id" in state:
                invoice_ids.add(state["invoice_id"])
            if "dispute_id" in state:
                dispute_ids.add(state["dispute_id"])
            if "dispute" in state:
                invoice_ids.add(state["dispute"]["invoice_id"])
            if "invoice" in state:
                issued.add(state["invoice"]["invoice_id"])
            if name == "PaymentReversed" and not state["releases"] and Decimal(state["forfeited"]):
                reversed_payments.add((state["origin"]["subject"], f"payment:{state['payment_id']}"))
            if name == "ReplayFinished":
                run_ids.add(state["run_id"])
            if name == "PrepaymentCancelled":
                request_ids.add((state["origin"]["subject"], state["request_id"]))
        self.invoices = self.stored_invoices(invoice_ids)
        # every stored row among these ids is loaded: no need to ask again for the others
        self.looked_up = invoice_ids
        self.before = {k: (v["open_amount"], self.shown_disputed(v)) for k, v in self.invoices.items()}
        self.disputes = self.stored_disputes(dispute_ids)
        self.replays = self.stored_replays(run_ids)
        self.prepayments = self.stored_prepayments(request_ids)
        self.tags: list[dict[str, Any]] = []  # the batch's new rows of ledger_prepayment_credits
        # stored disputes that wait for an invoice issued in this batch, in one query
        self.waiting: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in self.disputes_waiting_for(issued):
            self.waiting[row["invoice_id"]][row["dispute_id"]] = row
        # the batch's disputes (loaded or opened in it) by invoice
        self.disputes_of: dict[str, dict[str, None]] = defaultdict(dict)  # ordered, unlike a set
        for dispute in self.disputes.values():
            self.disputes_of[dispute["invoice_id"]][dispute["dispute_id"]] = None
        # the currency of payments reversed without having paid an invoice: their receipts
        self.credit_currency: dict[tuple[str, str], str] = (
            self.receipt_currencies(reversed_payments) if reversed_payments else {}
        )

    # Where a batch finds the rows stored before it: the tables (a replay's build overrides
    # these to read its own rows from memory, see ``services.ledger.replay.shadow_rows``).

    def stored_invoices(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        return self._load(self.models.invoices, self.models.invoices.c.invoice_id, ids)

    def stored_disputes(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        return self._load(self.models.disputes, self.models.disputes.c.dispute_id, ids)

    def stored_replays(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        return self._load(self.models.replays, self.models.replays.c.run_id, ids)

    def stored_prepayments(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The requests of these (customer, request id) pairs."""
        rows = self._select(self.models.prepayments, self.models.prepayments.c.request_id,
                            {request for _, request in keys})
        return {(row["customer_id"], row["request_id"]): row for row in rows
                if (row["customer_id"], row["request_id"]) in keys}

    def disputes_waiting_for(self, invoice_ids: set[str]) -> list[dict[str, Any]]:
        return self._select(self.models.disputes, self.models.disputes.c.invoice_id, invoice_ids)

    def receipt_currencies(self, credits: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The currency of each (customer, credit key) from the credit's stored movements."""
        table = self.models.movements
        query = select(table.c.customer_id, table.c.credit, table.c.currency).where(
            table.c.customer_id.in_(sorted({customer for customer, _ in credits})),
            table.c.credit.in_(sorted({credit for _, credit in credits})),
        )
        return {(row[0], row[1]): row[2] for row in self.conn.execute(query)}

    def _load(self, table: Table, key: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
        return {row[key.name]: row for row in self._select(table, key, ids)}

    def _select(self, table: Table, key: Any, ids: set[str]) -> list[dict[str, Any]]:
        """The rows whose ``key`` is among ``ids``.

        PostgreSQL gets the ids as one array parameter (``= ANY``): an ``IN`` list of
        thousands of placeholders costs psycopg milliseconds of query parsing per statement.
        """
        if not ids:
            return []
        ordered = sorted(ids)
        if self.conn.dialect.name == "postgresql":
            chunks = [select(table).where(key == any_(bindparam("ids", ordered, type_=ARRAY(key.type))))]
        else:
            chunks = [select(table).where(key.in_(ordered[start:start + 500]))
                      for start in range(0, len(ordered), 500)]
        return [dict(row) for query in chunks for row in self.conn.execute(query).mappings()]

    @staticmethod
    def shown_disputed(row: dict[str, Any]) -> Decimal:
        return shown_disputed(row["disputed_raw"], row["open_amount"], row["status"])

    def move(
        self, position: int, recorded_at: datetime, customer_id: str, currency: str, kind: str,
        effective: date, *, invoice: dict[str, Any] | None = None, open_delta: Decimal = ZERO,
        disputed_delta: Decimal = ZERO, unapplied_delta: Decimal = ZERO, credit: str | None = None,
        reference: str | None = None,
    ) -> None:
        self.movements.append({
            "position": position, "customer_id": customer_id,
            "invoice_id": invoice["invoice_id"] if invoice else None, "currency": currency,
            "kind": kind, "open_delta": open_delta, "disputed_delta": disputed_delta,
            "unapplied_delta": unapplied_delta, "due_date": invoice["due_date"] if invoice else None,
            "effective_date": effective, "recorded_at": recorded_at, "credit": credit,
            "reference": reference,
        })
        if invoice is not None:
            # the span of effective dates lets a past-date aging read the row instead of its movements
            first, last = invoice.get("first_effective"), invoice.get("last_effective")
            invoice["first_effective"] = effective if first is None or effective < first else first
            invoice["last_effective"] = effective if last is None or effective > last else last
        if unapplied_delta:
            self.unapplied[customer_id, currency] += unapplied_delta

    def balance_deltas(self) -> dict[tuple[str, str], list[Decimal]]:
        """Per (customer, currency): what the batch changed in open, disputed, unapplied.

        Every (customer, currency) the batch touched is there, also with zero deltas: whether
        a balance row exists must not depend on where batches begin (a replay batches
        differently).
        """
        deltas: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
        for invoice_id, row in self.invoices.items():
            old_open, old_disputed = self.before.get(invoice_id, (ZERO, ZERO))
            new_open = ZERO if row["status"] == "cancelled" else row["open_amount"]
            delta = deltas[row["customer_id"], row["currency"]]
            delta[0] += new_open - old_open
            delta[1] += self.shown_disputed(row) - old_disputed
        for key, amount in self.unapplied.items():
            deltas[key][2] += amount
        return deltas

    def write(self) -> None:
        conn, models = self.conn, self.models
        if self.movements:
            insert_rows(conn, models.movements, self.movements)
        if self.invoices:
            upsert(conn, models.invoices, list(self.invoices.values()), ["invoice_id"])
        upsert(
            conn, models.balances,
            [{"customer_id": c, "currency": cur, "open_amount": d[0], "disputed_amount": d[1],
              "unapplied_cash": d[2]} for (c, cur), d in self.balance_deltas().items()],
            ["customer_id", "currency"],
            increment=["open_amount", "disputed_amount", "unapplied_cash"],
        )
        if self.disputes:
            upsert(conn, models.disputes, list(self.disputes.values()), ["dispute_id"])
        if self.customers:
            upsert(conn, models.customers, list(self.customers.values()), ["customer_id"])
        if self.replays:
            upsert(conn, models.replays, list(self.replays.values()), ["run_id"])
        if self.prepayments:
            upsert(conn, models.prepayments, list(self.prepayments.values()), ["customer_id", "request_id"])
        if self.tags:
            upsert(conn, models.prepayment_credits, self.tags, ["customer_id", "credit"])


class LedgerProjector:
    """Keeps the ledger's read models, one transaction per batch of notifications.

    ``apply`` is the live projector's step: under its position row's lock (PostgreSQL:
    SELECT ... FOR UPDATE; SQLite: the engine's BEGIN IMMEDIATE) it skips what is already
    done, projects the rest and records the new position, all in one transaction. A replay
    calls ``project`` on a set of shadow tables with positions of its own.
    """

    name = "ledger-projections"

    def __init__(self, app: TrackedApplication, engine: Engine, models: ReadModels = LIVE) -> None:
        self.app = app
        self.engine = engine
        self.models = models
        self.decode = EventDecoder(app)

    def position(self) -> int:
        with self.engine.connect() as conn:
            return locked_position(conn, self.name, lock=False)

    async def process(self, notifications: Sequence[Notification]) -> None:
        await asyncio.to_thread(self.apply, notifications)

    def apply(self, notifications: Sequence[Notification]) -> None:
        events = self.decode(notifications)
        with self.engine.begin() as conn:
            done = locked_position(conn, self.name)
            events = [e for e in events if e[0] > done]
            if events:
                self.project(conn, events)
                record_position(conn, self.name, events[-1][0])

    def project(self, conn: Connection, events: list[Decoded]) -> None:
        """Apply decoded events to this projector's tables in ``conn``'s transaction."""
        if events:
            self.project_batch(_Batch(conn, self.models, events), events)

    def project_batch(self, batch: _Batch, events: list[Decoded]) -> None:
        """Apply decoded events to the rows ``batch`` found, then have it write them."""
        for position, name, state in events:
            handler = getattr(self, "_on_" + name, None)
            if handler is not None:
                handler(batch, position, state)
        batch.write()

    # ---------------------------------------------------------------- handlers

    def _applications(self, batch: _Batch, position: int, event: dict[str, Any],
                      entries: list[dict[str, str]], sign: int) -> None:
        customer_id = event["origin"]["subject"]
        recorded = event["timestamp"]
        for entry in entries:
            invoice = batch.invoices[entry["invoice"]]
            amount, discount = Decimal(entry["amount"]), Decimal(entry["discount"])
            when = _d(entry["date"])
            kind = "applied" if sign > 0 else "released"
            batch.move(position, recorded, customer_id, invoice["currency"], kind, when,
                       invoice=invoice, open_delta=-sign * amount, unapplied_delta=-sign * amount,
                       credit=entry["credit"])
            if discount:
                batch.move(position, recorded, customer_id, invoice["currency"],
                           "discount" if sign > 0 else "discount_released", when, invoice=invoice,
                           open_delta=-sign * discount, credit=entry["credit"])
                invoice["discount_taken"] += sign * discount

    def _outcomes(self, batch: _Batch, event: dict[str, Any]) -> None:
        for invoice_id, outcome in event["touched"].items():
            row = batch.invoices[invoice_id]
            row["open_amount"] = Decimal(outcome["open_amount"])
            row["status"] = outcome["status"]
            row["settled_date"] = _d(outcome["settled_date"]) if outcome["settled_date"] else None
            row["updated_at"] = event["timestamp"]

    def _credit(self, batch: _Batch, position: int, event: dict[str, Any], credit: dict[str, Any]) -> None:
        batch.move(position, event["timestamp"], event["origin"]["subject"], credit["currency"],
                   _CREDIT_KINDS[credit["kind"]], _d(credit["date"]),
                   unapplied_delta=Decimal(credit["amount"]), credit=credit["key"])

    def _on_Opened(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        customer_id = event["customer_id"]
        if customer_id not in batch.customers:
            batch.customers[customer_id] = {"customer_id": customer_id, "name": None, "profile": {},
                                            "updated_at": event["timestamp"]}

    def _on_ProfileUpdated(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        customer_id = event["origin"]["subject"]
        profile = event["profile"]
        batch.customers[customer_id] = {"customer_id": customer_id, "name": profile.get("name"),
                                        "profile": profile, "updated_at": event["timestamp"]}

    def _on_InvoiceIssued(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        record = event["invoice"]
        recorded = event["timestamp"]
        customer_id = event["origin"]["subject"]
        invoice_id = record["invoice_id"]
        amount = Decimal(record["amount"])
        issue_date = _d(record["issue_date"])
        # disputes that arrived before their invoice: stored ones and ones earlier in this batch
        waiting = dict(batch.waiting.get(invoice_id, {}))
        for dispute_id in batch.disputes_of.get(invoice_id, ()):
            if batch.disputes[dispute_id]["invoice_id"] == invoice_id:  # not since moved to another
                waiting[dispute_id] = batch.disputes[dispute_id]
        pending = [d for d in waiting.values() if d["status"] == "open"]
        row = {
            "invoice_id": invoice_id, "customer_id": customer_id,
            "currency": record["currency"], "amount": amount, "open_amount": amount,
            "disputed_raw": sum((d["amount"] for d in pending), ZERO), "written_off": ZERO,
            "discount_taken": ZERO, "status": "open", "issue_date": issue_date,
            "due_date": _d(record["due_date"]), "settled_date": None,
            "reference": record.get("reference"), "attributes": record.get("attributes") or {},
            "terms": record.get("terms"), "recorded_at": recorded, "updated_at": recorded,
        }
        batch.invoices[invoice_id] = row
        batch.move(position, recorded, customer_id, row["currency"], "invoice_issued", issue_date,
                   invoice=row, open_delta=amount)
        for dispute in pending:
            batch.move(position, recorded, customer_id, row["currency"], "dispute_opened",
                       max(dispute["opened_date"], issue_date), invoice=row,
                       disputed_delta=dispute["amount"])
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_InvoiceAdjusted(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        row = batch.invoices[event["invoice_id"]]
        new_amount = Decimal(event["new_amount"])
        when = max(_d(event["effective_date"]), row["issue_date"])
        batch.move(position, event["timestamp"], row["customer_id"], row["currency"], "adjusted", when,
                   invoice=row, open_delta=new_amount - row["amount"])
        row["amount"] = new_amount
        self._applications(batch, position, event, event["releases"], -1)
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_InvoiceCancelled(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        invoice_id = event["invoice_id"]
        row = batch.invoices[invoice_id]
        released = sum(
            (Decimal(r["amount"]) + Decimal(r["discount"]) for r in event["releases"]
             if r["invoice"] == invoice_id), ZERO,
        )
        self._applications(batch, position, event, event["releases"], -1)
        batch.move(position, event["timestamp"], row["customer_id"], row["currency"], "cancelled",
                   max(_d(event["effective_date"]), row["issue_date"]), invoice=row,
                   open_delta=-(row["open_amount"] + released))
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_InvoiceWrittenOff(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        row = batch.invoices[event["invoice_id"]]
        amount = Decimal(event["amount"])
        batch.move(position, event["timestamp"], row["customer_id"], row["currency"], "written_off",
                   max(_d(event["effective_date"]), row["issue_date"]), invoice=row, open_delta=-amount)
        row["written_off"] += amount
        self._outcomes(batch, event)

    def _on_CreditReceived(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        credit = event["credit"]
        self._credit(batch, position, event, credit)
        request_id = (credit.get("details") or {}).get("prepayment_request_id")
        if request_id:
            self._tag(batch, event, credit["key"], request_id)
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_PaymentReversed(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        self._applications(batch, position, event, event["releases"], -1)
        forfeited = Decimal(event["forfeited"])
        if forfeited:
            currency = next(
                (batch.invoices[r["invoice"]]["currency"] for r in event["releases"]), None
            ) or self._credit_currency(batch, event)
            batch.move(position, event["timestamp"], event["origin"]["subject"], currency,
                       "payment_reversed", _d(event["forfeited_on"]), unapplied_delta=-forfeited,
                       credit=f"payment:{event['payment_id']}")
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_PrepaymentRequested(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        """No receivable: the request's row, the payments that came before it and are held for
        it, and what held cash its order's open invoice takes at once."""
        request = event["request"]
        batch.prepayments[event["origin"]["subject"], request["request_id"]] = {
            "request_id": request["request_id"], "customer_id": event["origin"]["subject"],
            "currency": request["currency"], "amount": Decimal(request["amount"]),
            "requested_date": _d(request["requested_date"]), "due_date": _d(request["due_date"]),
            "order_id": request["order_id"], "recorded_at": event["timestamp"],
            "cancelled_date": None, "cancelled_at": None, "cancel_reason": None,
        }
        for key in event["retagged"]:
            self._tag(batch, event, key, request["request_id"])
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_PrepaymentCancelled(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        """The request withdrawn (its held cash is ordinary from now: applied oldest due first)."""
        row = batch.prepayments.get((event["origin"]["subject"], event["request_id"]))
        if row is not None:  # (None: projected before requests had rows; a replay makes it)
            row.update(cancelled_date=_d(event["effective_date"]), cancelled_at=event["timestamp"],
                       cancel_reason=event["reason"])
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    @staticmethod
    def _tag(batch: _Batch, event: dict[str, Any], credit: str, request_id: str) -> None:
        batch.tags.append({"customer_id": event["origin"]["subject"], "credit": credit,
                           "request_id": request_id, "recorded_at": event["timestamp"]})

    def _on_PaymentRefunded(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        """Money paid back out of the unapplied cash: a movement per credit it took from, each
        referring to the refund (the statement shows them as one line)."""
        for take in event["takes"]:
            batch.move(position, event["timestamp"], event["origin"]["subject"], event["currency"],
                       "refund", _d(event["effective_date"]), unapplied_delta=-Decimal(take["amount"]),
                       credit=take["credit"], reference=event["refund_id"])

    @staticmethod
    def _credit_currency(batch: _Batch, event: dict[str, Any]) -> str:
        """The currency of a reversed payment that paid no invoice (from its receipt movement)."""
        credit = f"payment:{event['payment_id']}"
        for movement in reversed(batch.movements):
            if movement["credit"] == credit:
                return str(movement["currency"])
        # stored before this batch: looked up when it began
        return batch.credit_currency[event["origin"]["subject"], credit]

    def _on_DisputeOpened(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        record = event["dispute"]
        customer_id = event["origin"]["subject"]
        amount = Decimal(record["amount"])
        batch.disputes[record["dispute_id"]] = {
            "dispute_id": record["dispute_id"], "customer_id": customer_id,
            "invoice_id": record["invoice_id"], "amount": amount, "status": "open",
            "opened_date": _d(record["opened_date"]), "resolved_date": None,
        }
        batch.disputes_of[record["invoice_id"]][record["dispute_id"]] = None
        row = batch.invoices.get(record["invoice_id"])
        if row is None:
            row = self._load_invoice(batch, record["invoice_id"])
        if row is not None:
            row["disputed_raw"] += amount
            batch.move(position, event["timestamp"], customer_id, row["currency"], "dispute_opened",
                       max(_d(record["opened_date"]), row["issue_date"]), invoice=row,
                       disputed_delta=amount)

    def _on_DisputeResolved(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        dispute = batch.disputes[event["dispute_id"]]
        dispute["status"] = event["outcome"]
        dispute["resolved_date"] = _d(event["resolved_date"])
        invoice_id = event["invoice_id"]
        row = batch.invoices.get(invoice_id) or self._load_invoice(batch, invoice_id)
        if row is not None:
            row["disputed_raw"] -= dispute["amount"]
            batch.move(position, event["timestamp"], dispute["customer_id"], row["currency"],
                       "dispute_closed", max(_d(event["resolved_date"]), row["issue_date"]), invoice=row,
                       disputed_delta=-dispute["amount"])
        if event["credit"] is not None:
            self._credit(batch, position, event, event["credit"])
        self._applications(batch, position, event, event["applications"], +1)
        self._outcomes(batch, event)

    def _on_ReplayRequested(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        batch.replays[event["run_id"]] = {
            "run_id": event["run_id"], "requested_by": event["requested_by"], "via": event["via"],
            "verify": event["verify"], "requested_at": event["timestamp"], "status": "running",
            "finished_at": None, "position": None, "events": None, "milliseconds": None,
            "detail": None,
        }

    def _on_ReplayFinished(self, batch: _Batch, position: int, event: dict[str, Any]) -> None:
        row = batch.replays.get(event["run_id"])
        if row is not None:
            row.update(status=event["status"], finished_at=event["timestamp"], position=event["position"],
                       events=event["events"], milliseconds=event["milliseconds"],
                       detail=event["detail"])

    @staticmethod
    def _load_invoice(batch: _Batch, invoice_id: str) -> dict[str, Any] | None:
        if invoice_id in batch.looked_up:
            return None  # looked up when the batch began: not stored (and not issued since)
        loaded = batch.stored_invoices({invoice_id})
        batch.invoices.update(loaded)
        for key, row in loaded.items():
            batch.before[key] = (row["open_amount"], batch.shown_disputed(row))
        return loaded.get(invoice_id)


def locked_position(conn: Connection, name: str, *, lock: bool = True) -> int:
    """A projector's recorded position; ``lock``: with its row locked to the transaction's end.

    On PostgreSQL, SELECT ... FOR UPDATE: one writer of these read models at a time. On
    SQLite the writer's engine already holds the database's write lock (BEGIN IMMEDIATE).
    """
    query = select(positions.c.position).where(positions.c.name == name)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return int(conn.execute(query).scalar() or 0)


def record_position(conn: Connection, name: str, position: int) -> None:
    upsert(conn, positions, [{"name": name, "position": position}], ["name"])
