"""The ledger's read models and the projector that keeps them.

Tables (plain SQL, indexed for the REST queries):
- ``ledger_invoices``: every invoice as it stands now;
- ``ledger_movements``: every change of an invoice's open amount, disputed amount or the
  customer's unapplied cash, with its effective date and the instant it was recorded; as-of
  and known-at answers are sums over it;
- ``ledger_balances``: per customer and currency, the current totals;
- ``ledger_disputes``, ``ledger_customers``;
- ``ledger_projection_positions``: how far each projector has read the notification log,
  updated in the same transaction as the rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Notification
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    select,
)
from sqlalchemy.engine import Connection

from shared.db import Money, insert_rows, upsert
from shared.eventstore import TrackedApplication
from shared.money import ZERO

metadata = MetaData()

invoices = Table(
    "ledger_invoices", metadata,
    Column("invoice_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
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
    Index("ix_ledger_movements_customer_date", "customer_id", "effective_date"),
    Index("ix_ledger_movements_invoice", "invoice_id"),
    Index("ix_ledger_movements_date", "effective_date"),
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
    Column("invoice_id", String(200), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("status", String(20), nullable=False),
    Column("opened_date", Date, nullable=False),
    Column("resolved_date", Date),
)

customers = Table(
    "ledger_customers", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("name", String(400)),
    Column("profile", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

positions = Table(
    "ledger_projection_positions", metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

_CREDIT_KINDS = {"payment": "payment_received", "credit_note": "credit_note_issued",
                 "dispute_credit": "dispute_credited"}


def _d(text: str) -> date:
    return date.fromisoformat(text)


class _Batch:
    """The rows one batch of events touches, loaded once and written back in bulk."""

    def __init__(self, conn: Connection, events: list[tuple[int, Any]]) -> None:
        self.conn = conn
        self.movements: list[dict[str, Any]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.unapplied: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        invoice_ids: set[str] = set()
        dispute_ids: set[str] = set()
        issued: set[str] = set()
        for _, event in events:
            state = event.__dict__
            invoice_ids.update(state.get("touched", ()))
            for key in ("invoice_id",):
                if key in state:
                    invoice_ids.add(state[key])
            if "dispute_id" in state:
                dispute_ids.add(state["dispute_id"])
            if "dispute" in state:
                invoice_ids.add(state["dispute"]["invoice_id"])
            if "invoice" in state:
                issued.add(state["invoice"]["invoice_id"])
        self.invoices = self._load(invoices, invoices.c.invoice_id, invoice_ids)
        # every stored row among these ids is loaded: no need to ask again for the others
        self.looked_up = invoice_ids
        self.before = {k: (v["open_amount"], self.shown_disputed(v)) for k, v in self.invoices.items()}
        self.disputes = self._load(disputes, disputes.c.dispute_id, dispute_ids)
        # stored disputes that wait for an invoice issued in this batch, in one query
        self.waiting: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        ordered = sorted(issued)
        for start in range(0, len(ordered), 500):
            query = select(disputes).where(disputes.c.invoice_id.in_(ordered[start:start + 500]))
            for row in conn.execute(query).mappings():
                self.waiting[row["invoice_id"]][row["dispute_id"]] = dict(row)

    def _load(self, table: Table, key: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            for row in self.conn.execute(select(table).where(key.in_(chunk))).mappings():
                rows[row[key.name]] = dict(row)
        return rows

    @staticmethod
    def shown_disputed(row: dict[str, Any]) -> Decimal:
        if row["status"] == "cancelled":
            return ZERO
        return min(row["disputed_raw"], row["open_amount"])

    def move(
        self, position: int, recorded_at: datetime, customer_id: str, currency: str, kind: str,
        effective: date, *, invoice: dict[str, Any] | None = None, open_delta: Decimal = ZERO,
        disputed_delta: Decimal = ZERO, unapplied_delta: Decimal = ZERO, credit: str | None = None,
    ) -> None:
        self.movements.append({
            "position": position, "customer_id": customer_id,
            "invoice_id": invoice["invoice_id"] if invoice else None, "currency": currency,
            "kind": kind, "open_delta": open_delta, "disputed_delta": disputed_delta,
            "unapplied_delta": unapplied_delta, "due_date": invoice["due_date"] if invoice else None,
            "effective_date": effective, "recorded_at": recorded_at, "credit": credit,
        })
        if unapplied_delta:
            self.unapplied[customer_id, currency] += unapplied_delta

    def write(self) -> None:
        conn = self.conn
        if self.movements:
            insert_rows(conn, movements, self.movements)
        if self.invoices:
            upsert(conn, invoices, list(self.invoices.values()), ["invoice_id"])
        deltas: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
        for invoice_id, row in self.invoices.items():
            old_open, old_disputed = self.before.get(invoice_id, (ZERO, ZERO))
            new_open = ZERO if row["status"] == "cancelled" else row["open_amount"]
            delta = deltas[row["customer_id"], row["currency"]]
            delta[0] += new_open - old_open
            delta[1] += self.shown_disputed(row) - old_disputed
        for key, amount in self.unapplied.items():
            deltas[key][2] += amount
        upsert(
            conn, balances,
            [{"customer_id": c, "currency": cur, "open_amount": d[0], "disputed_amount": d[1],
              "unapplied_cash": d[2]} for (c, cur), d in deltas.items() if any(d)],
            ["customer_id", "currency"],
            increment=["open_amount", "disputed_amount", "unapplied_cash"],
        )
        if self.disputes:
            upsert(conn, disputes, list(self.disputes.values()), ["dispute_id"])
        if self.customers:
            upsert(conn, customers, list(self.customers.values()), ["customer_id"])


class LedgerProjector:
    """Keeps the ledger's read models, one transaction per batch of notifications."""

    name = "ledger-projections"

    def __init__(self, app: TrackedApplication, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    def position(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(positions.c.position).where(positions.c.name == self.name)
            ).scalar()
        return int(value or 0)

    async def process(self, notifications: Sequence[Notification]) -> None:
        await asyncio.to_thread(self.apply, notifications)

    def apply(self, notifications: Sequence[Notification]) -> None:
        events = [(n.id, self.app.mapper.to_domain_event(n)) for n in notifications]
        with self.engine.begin() as conn:
            query = select(positions.c.position).where(positions.c.name == self.name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # one projector writes at a time
            done = int(conn.execute(query).scalar() or 0)
            events = [(position, e) for position, e in events if position > done]
            if not events:
                return
            batch = _Batch(conn, events)
            for position, event in events:
                handler = getattr(self, "_on_" + type(event).__name__, None)
                if handler is not None:
                    handler(batch, position, event)
            batch.write()
            upsert(conn, positions, [{"name": self.name, "position": events[-1][0]}], ["name"])

    # ---------------------------------------------------------------- handlers

    def _applications(self, batch: _Batch, position: int, event: Any, entries: list[dict[str, str]],
                      sign: int) -> None:
        customer_id = event.origin["subject"]
        for entry in entries:
            invoice = batch.invoices[entry["invoice"]]
            amount, discount = Decimal(entry["amount"]), Decimal(entry["discount"])
            when = _d(entry["date"])
            kind = "applied" if sign > 0 else "released"
            batch.move(position, event.timestamp, customer_id, invoice["currency"], kind, when,
                       invoice=invoice, open_delta=-sign * amount, unapplied_delta=-sign * amount,
                       credit=entry["credit"])
            if discount:
                batch.move(position, event.timestamp, customer_id, invoice["currency"],
                           "discount" if sign > 0 else "discount_released", when, invoice=invoice,
                           open_delta=-sign * discount, credit=entry["credit"])
                invoice["discount_taken"] += sign * discount

    def _outcomes(self, batch: _Batch, event: Any) -> None:
        for invoice_id, outcome in event.touched.items():
            row = batch.invoices[invoice_id]
            row["open_amount"] = Decimal(outcome["open_amount"])
            row["status"] = outcome["status"]
            row["settled_date"] = _d(outcome["settled_date"]) if outcome["settled_date"] else None
            row["updated_at"] = event.timestamp

    def _credit(self, batch: _Batch, position: int, event: Any, credit: dict[str, Any]) -> None:
        batch.move(position, event.timestamp, event.origin["subject"], credit["currency"],
                   _CREDIT_KINDS[credit["kind"]], _d(credit["date"]),
                   unapplied_delta=Decimal(credit["amount"]), credit=credit["key"])

    def _on_Opened(self, batch: _Batch, position: int, event: Any) -> None:
        customer_id = event.customer_id
        if customer_id not in batch.customers:
            batch.customers[customer_id] = {"customer_id": customer_id, "name": None, "profile": {},
                                            "updated_at": event.timestamp}

    def _on_ProfileUpdated(self, batch: _Batch, position: int, event: Any) -> None:
        customer_id = event.origin["subject"]
        batch.customers[customer_id] = {"customer_id": customer_id, "name": event.profile.get("name"),
                                        "profile": event.profile, "updated_at": event.timestamp}

    def _on_InvoiceIssued(self, batch: _Batch, position: int, event: Any) -> None:
        record = event.invoice
        customer_id = event.origin["subject"]
        amount = Decimal(record["amount"])
        issue_date = _d(record["issue_date"])
        # disputes that arrived before their invoice: stored ones and ones earlier in this batch
        waiting = dict(batch.waiting.get(record["invoice_id"], {}))
        waiting.update({k: v for k, v in batch.disputes.items() if v["invoice_id"] == record["invoice_id"]})
        pending = [d for d in waiting.values() if d["status"] == "open"]
        row = {
            "invoice_id": record["invoice_id"], "customer_id": customer_id,
            "currency": record["currency"], "amount": amount, "open_amount": amount,
            "disputed_raw": sum((d["amount"] for d in pending), ZERO), "written_off": ZERO,
            "discount_taken": ZERO, "status": "open", "issue_date": issue_date,
            "due_date": _d(record["due_date"]), "settled_date": None,
            "reference": record.get("reference"), "attributes": record.get("attributes") or {},
            "terms": record.get("terms"), "recorded_at": event.timestamp,
            "updated_at": event.timestamp,
        }
        batch.invoices[row["invoice_id"]] = row
        batch.move(position, event.timestamp, customer_id, row["currency"], "invoice_issued", issue_date,
                   invoice=row, open_delta=amount)
        for dispute in pending:
            batch.move(position, event.timestamp, customer_id, row["currency"], "dispute_opened",
                       max(dispute["opened_date"], issue_date), invoice=row,
                       disputed_delta=dispute["amount"])
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    def _on_InvoiceAdjusted(self, batch: _Batch, position: int, event: Any) -> None:
        row = batch.invoices[event.invoice_id]
        new_amount = Decimal(event.new_amount)
        when = max(_d(event.effective_date), row["issue_date"])
        batch.move(position, event.timestamp, row["customer_id"], row["currency"], "adjusted", when,
                   invoice=row, open_delta=new_amount - row["amount"])
        row["amount"] = new_amount
        self._applications(batch, position, event, event.releases, -1)
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    def _on_InvoiceCancelled(self, batch: _Batch, position: int, event: Any) -> None:
        row = batch.invoices[event.invoice_id]
        released = sum(
            (Decimal(r["amount"]) + Decimal(r["discount"]) for r in event.releases
             if r["invoice"] == event.invoice_id), ZERO,
        )
        self._applications(batch, position, event, event.releases, -1)
        batch.move(position, event.timestamp, row["customer_id"], row["currency"], "cancelled",
                   max(_d(event.effective_date), row["issue_date"]), invoice=row,
                   open_delta=-(row["open_amount"] + released))
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    def _on_InvoiceWrittenOff(self, batch: _Batch, position: int, event: Any) -> None:
        row = batch.invoices[event.invoice_id]
        amount = Decimal(event.amount)
        batch.move(position, event.timestamp, row["customer_id"], row["currency"], "written_off",
                   max(_d(event.effective_date), row["issue_date"]), invoice=row, open_delta=-amount)
        row["written_off"] += amount
        self._outcomes(batch, event)

    def _on_CreditReceived(self, batch: _Batch, position: int, event: Any) -> None:
        self._credit(batch, position, event, event.credit)
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    def _on_PaymentReversed(self, batch: _Batch, position: int, event: Any) -> None:
        self._applications(batch, position, event, event.releases, -1)
        forfeited = Decimal(event.forfeited)
        if forfeited:
            currency = next(
                (batch.invoices[r["invoice"]]["currency"] for r in event.releases), None
            ) or self._credit_currency(batch, event)
            batch.move(position, event.timestamp, event.origin["subject"], currency, "payment_reversed",
                       _d(event.forfeited_on), unapplied_delta=-forfeited,
                       credit=f"payment:{event.payment_id}")
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    def _credit_currency(self, batch: _Batch, event: Any) -> str:
        """The currency of a reversed payment that paid no invoice (from its receipt movement)."""
        credit = f"payment:{event.payment_id}"
        for movement in reversed(batch.movements):
            if movement["credit"] == credit:
                return str(movement["currency"])
        return str(batch.conn.execute(
            select(movements.c.currency).where(movements.c.credit == credit,
                                               movements.c.customer_id == event.origin["subject"])
            .limit(1)
        ).scalar_one())

    def _on_DisputeOpened(self, batch: _Batch, position: int, event: Any) -> None:
        record = event.dispute
        customer_id = event.origin["subject"]
        amount = Decimal(record["amount"])
        batch.disputes[record["dispute_id"]] = {
            "dispute_id": record["dispute_id"], "customer_id": customer_id,
            "invoice_id": record["invoice_id"], "amount": amount, "status": "open",
            "opened_date": _d(record["opened_date"]), "resolved_date": None,
        }
        row = batch.invoices.get(record["invoice_id"])
        if row is None:
            row = self._load_invoice(batch, record["invoice_id"])
        if row is not None:
            row["disputed_raw"] += amount
            batch.move(position, event.timestamp, customer_id, row["currency"], "dispute_opened",
                       max(_d(record["opened_date"]), row["issue_date"]), invoice=row,
                       disputed_delta=amount)

    def _on_DisputeResolved(self, batch: _Batch, position: int, event: Any) -> None:
        dispute = batch.disputes[event.dispute_id]
        dispute["status"] = event.outcome
        dispute["resolved_date"] = _d(event.resolved_date)
        row = batch.invoices.get(event.invoice_id) or self._load_invoice(batch, event.invoice_id)
        if row is not None:
            row["disputed_raw"] -= dispute["amount"]
            batch.move(position, event.timestamp, dispute["customer_id"], row["currency"],
                       "dispute_closed", max(_d(event.resolved_date), row["issue_date"]), invoice=row,
                       disputed_delta=-dispute["amount"])
        if event.credit is not None:
            self._credit(batch, position, event, event.credit)
        self._applications(batch, position, event, event.applications, +1)
        self._outcomes(batch, event)

    @staticmethod
    def _load_invoice(batch: _Batch, invoice_id: str) -> dict[str, Any] | None:
        if invoice_id in batch.looked_up:
            return None  # looked up when the batch began: not stored (and not issued since)
        loaded = batch._load(invoices, invoices.c.invoice_id, {invoice_id})
        batch.invoices.update(loaded)
        for key, row in loaded.items():
            batch.before[key] = (row["open_amount"], batch.shown_disputed(row))
        return loaded.get(invoice_id)
