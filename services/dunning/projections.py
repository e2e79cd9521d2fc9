"""The dunning service's read models and the projector that keeps them.

Tables (plain SQL, indexed for the REST queries and the run):
- ``dunning_accounts``: per customer, its policy (asked for, used, and the version used),
  ``do_not_dun`` and ``wake_date``: the date before which a run cannot act for it. A run
  loads only customers with ``wake_date <= as_of`` (and those whose policy changed since
  their wake date was worked out), so a daily run over a large book touches few accounts;
- ``dunning_invoices``: every invoice dunning knows, with its open and disputed amounts,
  level, escalation and pause (the worklist is one SQL aggregate over it);
- ``dunning_notices`` (the published payload kept whole) and ``dunning_notice_invoices``;
- ``dunning_promises``, ``dunning_policies``, ``dunning_runs``;
- ``dunning_projection_positions``: how far the projector has read the notification log,
  updated in the same transaction as the rows.

The projector moves a mirror of recently seen accounts forward with each event
(``shared.account_projector``), reading those a batch needs and the mirror lacks in one
query per 500 (``_preload``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
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
    select,
)
from sqlalchemy.engine import Connection

from services.dunning.domain import DunningAccount, Policy
from services.dunning.domain.collectors import COLLECTOR_BOOK_ID
from services.dunning.domain.plans import OPEN as PLAN_OPEN
from services.dunning.domain.registry import (
    POLICY_BOOK_ID,
    RUN_REGISTRY_ID,
    STATEMENT_REGISTRY_ID,
    PolicyBook,
    resolve,
)
from services.dunning.kpi_entries import KPI_EVENTS, KpiBefore, kpi_rows
from services.dunning.outbound import notice_message
from shared.account_projector import AccountProjector, Touched, positions_table
from shared.db import Money, upsert
from shared.eventstore import TrackedApplication
from shared.stored_events import select_stored_events

metadata = MetaData()

accounts = Table(
    "dunning_accounts", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("policy", String(64), nullable=False),  # as the profile names it
    Column("policy_used", String(64), nullable=False),  # the default when that is unknown
    Column("policy_version", Integer, nullable=False),  # of policy_used, for wake_date
    Column("do_not_dun", Boolean, nullable=False),
    Column("wake_date", Date, index=True),
    Column("last_run_on", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("collector_id", String(200), index=True),  # who works the customer
    Column("assigned_by", String(10)),  # rule or manual
    Column("last_contact_on", Date),
    # payment plans: the open one (requested or active) and how many were agreed, completed, broken
    Column("plan_id", String(200)),
    Column("plan_status", String(20)),
    Column("plans_agreed", Integer, nullable=False, server_default="0"),
    Column("plans_completed", Integer, nullable=False, server_default="0"),
    Column("plans_broken", Integer, nullable=False, server_default="0"),
    Column("balance_disputed_on", Date),  # the customer disputed a statement's balance
    Column("name", String(500)),  # (what a statement run needs of the profile)
    Column("language", String(2)),
)

invoices = Table(
    "dunning_invoices", metadata,
    Column("invoice_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("open_amount", Money, nullable=False),
    Column("disputed_amount", Money, nullable=False),
    Column("status", String(20), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("level", Integer, nullable=False),
    Column("last_noticed", Date),
    Column("escalated", Boolean, nullable=False),
    Column("promise_id", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("collector_id", String(200)),  # the customer's (one collector's worklist reads only these)
    Index("ix_dunning_invoices_open_due", "open_amount", "due_date"),
)
# One collector's worklist: its dunnable invoices in the order the worklist groups them, with
# every column it sums, so that it is read from the index alone, without a sort (on PostgreSQL
# while the table's visibility map is fresh: the migration has autovacuum visit it often).
Index("ix_dunning_invoices_collector_worklist", invoices.c.collector_id, invoices.c.customer_id,
      invoices.c.currency, invoices.c.due_date, invoices.c.open_amount, invoices.c.disputed_amount,
      invoices.c.level, invoices.c.escalated,
      postgresql_where=invoices.c.open_amount > invoices.c.disputed_amount,
      sqlite_where=invoices.c.open_amount > invoices.c.disputed_amount)

notices = Table(
    "dunning_notices", metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("as_of", Date, nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("level", Integer, nullable=False),
    Column("level_name", String(64), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("total_due", Money, nullable=False),
    Column("escalate", Boolean, nullable=False),
    Column("position", BigInteger, nullable=False),  # notification id: the order issued
    Column("payload", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

notice_invoices = Table(
    "dunning_notice_invoices", metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("invoice_id", String(200), primary_key=True, index=True),
    Column("open_amount", Money, nullable=False),
    Column("days_past_due", Integer, nullable=False),
    Column("level", Integer, nullable=False),
)

promises = Table(
    "dunning_promises", metadata,
    Column("promise_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("made_on", Date, nullable=False),
    Column("promised_date", Date, nullable=False),
    Column("paused_until", Date, nullable=False),
    Column("invoice_ids", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("closed_on", Date),
)

policies = Table(
    "dunning_policies", metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

tasks = Table(
    "dunning_tasks", metadata,
    Column("task_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("notice_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("due_on", Date, nullable=False),
    Column("collector_id", String(200)),
    Column("status", String(10), nullable=False),
    Column("outcome", String(20)),
    Column("note", String(2000)),
    Column("completed_on", Date),
    Column("completed_by", String(200)),
    Index("ix_dunning_tasks_collector_status", "collector_id", "status", "due_on"),
)

# What the collectors' KPIs are summed from: one row per figure an event adds, dated by the
# business date it is about and with the collector who worked the customer then (see
# ``kpi_rows``; ``queries.kpis``).
kpi_entries = Table(
    "dunning_kpi_entries", metadata,
    Column("position", BigInteger, primary_key=True),  # the event's notification id
    Column("seq", Integer, primary_key=True),  # its rows, in order
    Column("customer_id", String(200), nullable=False),
    Column("collector_id", String(200)),
    Column("kind", String(20), nullable=False),
    Column("currency", String(3)),
    Column("amount", Money),
    Column("on_date", Date, nullable=False),
    Column("invoice_id", String(200)),
    Column("due_date", Date),
    Index("ix_dunning_kpi_entries_kind_date", "kind", "on_date"),
    Index("ix_dunning_kpi_entries_customer", "customer_id", "kind"),
)

plans = Table(
    "dunning_plans", metadata,
    Column("plan_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("total", Money, nullable=False),
    Column("requested_on", Date, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("decided_on", Date),
    Column("closed_on", Date),
    Column("plan", JSON, nullable=False),  # as GET /payment-plans/{plan_id} answers it
    Index("ix_dunning_plans_status", "status", "requested_on"),
)

statements = Table(
    "dunning_statements", metadata,
    Column("statement_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("as_of", Date, nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("closing_balance", Money, nullable=False),
    Column("confirmation_requested", Boolean, nullable=False),
    Column("response", String(10)),  # confirmed or disputed, the latest answer
    Column("responded_on", Date),
    Column("position", BigInteger, nullable=False),  # notification id: the order issued
    Column("payload", JSON, nullable=False),  # as published, with the answer when there is one
)

runs = Table(
    "dunning_runs", metadata,
    Column("as_of", Date, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("notices", Integer, nullable=False),
    Column("customers", Integer, nullable=False),
    Column("broken_promises", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

positions = positions_table("dunning_projection_positions", metadata)

PROJECTOR_NAME = "dunning-projections"
_SINGLETONS = frozenset({POLICY_BOOK_ID, RUN_REGISTRY_ID, COLLECTOR_BOOK_ID, STATEMENT_REGISTRY_ID})


class _Touched(Touched[DunningAccount]):
    """An account touched by a batch and the invoices whose rows must be written, each with the
    time of the last event that touched it (a row's ``updated_at``: where a batch ends does not
    change it)."""

    __slots__ = ("invoice_ids",)

    def __init__(self, account: DunningAccount) -> None:
        super().__init__(account)
        self.invoice_ids: dict[str, datetime] = {}


class DunningProjector(AccountProjector[DunningAccount]):
    """Keeps the dunning read models, one transaction per batch of notifications."""

    name = PROJECTOR_NAME
    positions = positions

    def __init__(self, app: TrackedApplication, engine: Engine, mirror_size: int = 20_000) -> None:
        super().__init__(app, engine, mirror_size)
        self._book: PolicyBook | None = None  # the policies as of the projector's position

    def prepare(self, events: list[tuple[int, Any]], done: int) -> Callable[[Connection], None]:
        """The batch's rows, worked out before its transaction (see ``AccountProjector.apply``),
        once the policies as of ``done`` are known; until then (the first batch, or after
        ``forget``) everything is done in the transaction, where they are read."""
        if self._book is None or done == 0:
            return lambda conn: self.project(conn, events, done)
        rows = self._rows(events)
        return lambda conn: self._write(conn, rows)

    def forget(self) -> None:
        self._book = None

    def project(self, conn: Connection, events: list[tuple[int, Any]], done: int) -> None:
        self._book = self._load_book(conn)
        self._write(conn, self._rows(events))

    def _rows(self, events: list[tuple[int, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Each table's rows for these events (the accounts they touch moved forward in the mirror)."""
        self._preload(events)
        touched: dict[UUID, _Touched] = {}
        rows: dict[str, list[dict[str, Any]]] = {"notices": [], "notice_invoices": [], "promises": [],
                                                 "policies": [], "runs": [], "accounts": [], "invoices": [],
                                                 "tasks": [], "kpi_entries": [], "plans": [],
                                                 "statements": []}
        for position, event in events:
            if event.originator_id == POLICY_BOOK_ID:
                self._on_policy_book(event, rows)
            elif event.originator_id in (COLLECTOR_BOOK_ID, STATEMENT_REGISTRY_ID):
                continue  # (read from their aggregates: the collectors and rules, the statement runs)
            elif event.originator_id == RUN_REGISTRY_ID:
                if type(event).__name__ == "RunRecorded":
                    run = event.run
                    rows["runs"].append({
                        "as_of": date.fromisoformat(run["as_of"]), "run_id": run["run_id"],
                        "notices": run["notices"], "customers": run["customers"],
                        "broken_promises": run["broken_promises"], "recorded_at": event.timestamp})
            elif type(event).__name__ == "StatementIssued":
                self._on_statement(position, event, rows)
            else:
                self._on_account_event(position, event, touched, rows)
        self._account_rows(touched, rows)
        return rows

    # ---------------------------------------------------------------- events

    def _load_book(self, conn: Any) -> PolicyBook:
        book = PolicyBook()
        book.collect_events()
        for row in conn.execute(select(policies.c.policy)).scalars():
            book.policies[row["name"]] = row
        return book

    def _on_policy_book(self, event: Any, rows: dict[str, list[dict[str, Any]]]) -> None:
        assert self._book is not None
        if type(event).__name__ != "PolicyStored":
            return
        policy = event.policy
        self._book.policies[policy["name"]] = policy
        _put(rows["policies"], "name", {"name": policy["name"], "version": policy["version"],
                                        "policy": policy, "updated_at": event.timestamp})

    def _preload(self, events: list[tuple[int, Any]]) -> None:
        """Read the accounts this batch needs and the mirror lacks, in one query per 500.

        (A run touches thousands of accounts the mirror has not seen lately; asking the
        store for each at its version is a round trip each.)
        """
        first: dict[UUID, int] = {}
        for _, event in events:
            if type(event).__name__ != "StatementIssued":  # (see ``_on_statement``)
                first.setdefault(event.originator_id, event.originator_version)
        mirror = self._mirror
        wanted = [aggregate_id for aggregate_id, version in first.items()
                  if version > 1 and aggregate_id not in _SINGLETONS
                  and not ((known := mirror.get(aggregate_id)) is not None and known.version == version - 1)]
        to_domain_event = self.app.mapper.to_domain_event
        for start in range(0, len(wanted), 500):
            for aggregate_id, stored_events in _group(select_stored_events(self.app.recorder,
                                                                     wanted[start:start + 500])):
                account: Any = None
                for stored in stored_events:
                    if stored.originator_version >= first[aggregate_id]:
                        break
                    past: Any = to_domain_event(stored)  # an aggregate event: it has mutate()
                    account = past.mutate(account)
                if account is not None:
                    mirror[aggregate_id] = account
                    mirror.move_to_end(aggregate_id)
        while len(mirror) > self.mirror_size:
            mirror.popitem(last=False)

    def _on_account_event(self, position: int, event: Any, touched: dict[UUID, _Touched],
                          rows: dict[str, list[dict[str, Any]]]) -> None:
        previous = self.previous(event)
        kind = type(event).__name__
        before = KpiBefore.of(previous, event.__dict__) if kind in KPI_EVENTS else None
        account = self.advance(event, previous)
        entry = self.touch(touched, event, account, _Touched)
        if before is not None:
            rows["kpi_entries"].extend(kpi_rows(position, kind, event.__dict__, account, before,
                                                event.timestamp.date()))
        ids, stamp = entry.invoice_ids, event.timestamp
        state = event.__dict__
        if kind == "InvoiceOpened":
            ids[state["invoice"]["invoice_id"]] = stamp
        elif kind == "CollectorAssigned":  # (every invoice row names the customer's collector)
            ids.update(dict.fromkeys(account.items.invoices, stamp))
        for outcome in state.get("outcomes", ()):
            ids[outcome["invoice_id"]] = stamp
        if kind == "DisputeOpened":
            ids[state["invoice_id"]] = stamp
        elif kind == "DisputeClosed":
            ids[account.items.dispute_invoice[state["dispute_id"]]] = stamp
        elif kind in ("PromiseMade", "PromiseKept", "PromiseBroken"):
            promise_id = state["promise"]["promise_id"] if kind == "PromiseMade" else state["promise_id"]
            promise = account.promises[promise_id]
            ids.update(dict.fromkeys(promise.invoice_ids, stamp))
            _put(rows["promises"], "promise_id", {
                "promise_id": promise_id, "customer_id": account.customer_id, "currency": promise.currency,
                "amount": promise.amount, "made_on": promise.made_on, "promised_date": promise.promised_date,
                "paused_until": promise.until, "invoice_ids": list(promise.invoice_ids),
                "status": promise.status, "closed_on": promise.closed_on,
            })
        elif kind == "StatementAnswered":
            self._answered(rows["statements"], state["answer"])
        elif kind in PLAN_EVENTS:
            plan_id = state["plan"]["plan_id"] if kind == "PlanRequested" else state["plan_id"]
            plan = account.plans[plan_id]
            view = plan.view(account.customer_id, account.covered_open(plan))
            _put(rows["plans"], "plan_id", {
                "plan_id": plan_id, "customer_id": account.customer_id, "currency": plan.currency,
                "status": plan.status, "total": plan.total, "requested_on": plan.requested_on,
                "requested_by": plan.requested_by, "decided_on": plan.decided_on, "closed_on": plan.closed_on,
                "plan": view})
            ids.update(dict.fromkeys(plan.invoice_ids, stamp))
        elif kind in ("TaskCreated", "TaskCompleted"):
            task = account.tasks[state["task_id"]]
            _put(rows["tasks"], "task_id", {
                "task_id": task.task_id, "customer_id": account.customer_id, "notice_id": task.notice_id,
                "kind": task.kind, "due_on": task.due_on, "collector_id": task.collector_id,
                "status": task.status, "outcome": task.outcome, "note": task.note,
                "completed_on": task.completed_on, "completed_by": task.completed_by,
            })
        elif kind in ("NoticeIssued", "InstalmentReminded"):
            notice = state["notice"]
            ids.update(dict.fromkeys((line["invoice_id"] for line in notice["invoices"]), stamp))
            rows["notices"].append({
                "notice_id": notice["notice_id"], "customer_id": notice["customer_id"],
                "as_of": date.fromisoformat(notice["as_of"]), "currency": notice["currency"],
                "level": notice["level"], "level_name": notice["level_name"], "channel": notice["channel"],
                "total_due": _money(notice["total_due"]), "escalate": notice["escalate"],
                "position": position, "payload": notice_message(notice), "recorded_at": event.timestamp,
            })
            rows["notice_invoices"].extend(
                {"notice_id": notice["notice_id"], "invoice_id": line["invoice_id"],
                 "open_amount": _money(line["open_amount"]), "days_past_due": line["days_past_due"],
                 "level": line["level"]}
                for line in notice["invoices"])

    def _on_statement(self, position: int, event: Any, rows: dict[str, list[dict[str, Any]]]) -> None:
        """A statement issued: its row, from the event alone. A statement run appends one to
        every account of the book, most of which the mirror does not hold: loading them for
        an event that changes no other row would cost the projector more than the run took.
        The mirror's copy moves forward if it is at hand, else it is dropped (read again
        when needed)."""
        statement = event.statement
        rows["statements"].append({
            "statement_id": statement["statement_id"], "customer_id": statement["customer_id"],
            "as_of": date.fromisoformat(statement["as_of"]), "currency": statement["currency"],
            "closing_balance": Decimal(statement["closing_balance"]),
            "confirmation_requested": statement["confirmation_requested"], "response": None,
            "responded_on": None, "position": position, "payload": statement})
        known = self._mirror.get(event.originator_id)
        if known is not None and known.version == event.originator_version - 1:
            self.advance(event, known)
        elif known is not None and known.version < event.originator_version:
            del self._mirror[event.originator_id]
        # (at or past this version: read for a later event of the batch, which it moves on from)

    def _answered(self, batch: list[dict[str, Any]], answer: dict[str, Any]) -> None:
        """The statement's row with the customer's answer (the row from this batch or the table)."""
        row = next((r for r in batch if r["statement_id"] == answer["statement_id"]), None)
        if row is None:
            with self.engine.connect() as conn:
                found = conn.execute(select(statements).where(
                    statements.c.statement_id == answer["statement_id"])).first()
            assert found is not None, answer["statement_id"]
            row = dict(found._mapping)
            batch.append(row)
        row.update(response=answer["response"], responded_on=date.fromisoformat(answer["responded_on"]),
                   payload={**row["payload"], "response": {k: v for k, v in answer.items()
                                                            if k != "recorded_by"}})

    # ---------------------------------------------------------------- writing

    def policy_for(self, account: DunningAccount) -> Policy:
        assert self._book is not None
        return resolve(self._book, account.policy_name)

    def _account_rows(self, touched: dict[UUID, _Touched], rows: dict[str, list[dict[str, Any]]]) -> None:
        """The touched accounts' rows and their invoices' (with the policies as the batch left them)."""
        account_rows, invoice_rows = rows["accounts"], rows["invoices"]
        resolved: dict[str, Policy] = {}  # once per batch: validating a policy costs ~100 µs
        for entry in touched.values():
            account = entry.account
            policy = resolved.get(account.policy_name)
            if policy is None:
                policy = resolved[account.policy_name] = self.policy_for(account)
            account_rows.append({
                "customer_id": account.customer_id, "policy": account.policy_name, "policy_used": policy.name,
                "policy_version": policy.version, "do_not_dun": account.do_not_dun,
                "wake_date": account.wake_date(policy), "last_run_on": account.last_run_on,
                "updated_at": entry.timestamp, "collector_id": account.collector_id,
                "assigned_by": account.assigned_by, "last_contact_on": account.last_contact_on,
                **_plan_columns(account), "balance_disputed_on": account.balance_disputed_on,
                "name": _name(account), "language": account.language,
            })
            for invoice_id, changed_at in sorted(entry.invoice_ids.items()):
                invoice = account.items.invoices.get(invoice_id)
                if invoice is None:  # a dispute waiting for its invoice
                    continue
                marks = account.marks(invoice_id)
                invoice_rows.append({
                    "invoice_id": invoice_id, "customer_id": account.customer_id,
                    "currency": invoice.currency, "amount": invoice.amount,
                    "open_amount": invoice.open_amount,
                    "disputed_amount": account.items.disputed_amount(invoice), "status": invoice.status,
                    "issue_date": invoice.issue_date, "due_date": invoice.due_date, "level": marks.level,
                    "last_noticed": marks.last_noticed, "escalated": marks.escalated,
                    "promise_id": marks.promise_id, "updated_at": changed_at,
                    "collector_id": account.collector_id,
                })

    @staticmethod
    def _write(conn: Any, rows: dict[str, list[dict[str, Any]]]) -> None:
        upsert(conn, policies, rows["policies"], ["name"])
        upsert(conn, accounts, rows["accounts"], ["customer_id"])
        upsert(conn, invoices, rows["invoices"], ["invoice_id"])
        upsert(conn, notices, rows["notices"], ["notice_id"])
        upsert(conn, notice_invoices, rows["notice_invoices"], ["notice_id", "invoice_id"])
        upsert(conn, promises, rows["promises"], ["promise_id"])
        upsert(conn, runs, rows["runs"], ["as_of"])
        upsert(conn, tasks, rows["tasks"], ["task_id"])
        upsert(conn, kpi_entries, rows["kpi_entries"], ["position", "seq"])
        upsert(conn, plans, rows["plans"], ["plan_id"])
        upsert(conn, statements, rows["statements"], ["statement_id"])


PLAN_EVENTS = frozenset({"PlanRequested", "PlanAgreed", "PlanRejected", "PlanBroken", "PlanCompleted",
                         "PlanCancelled"})


def _plan_columns(account: DunningAccount) -> dict[str, Any]:
    """The account row's plan columns: its open plan (the latest asked for) and the counts."""
    statuses = [plan.status for plan in account.plans.values()]
    current = next((plan for plan in reversed(account.plans.values()) if plan.status in PLAN_OPEN), None)
    return {"plan_id": current.plan_id if current else None,
            "plan_status": current.status if current else None,
            "plans_agreed": sum(1 for plan in account.plans.values() if plan.agreed),
            "plans_completed": statuses.count("completed"), "plans_broken": statuses.count("broken")}


def _name(account: DunningAccount) -> str:
    """The name a statement addresses (never null: null is a row written before the column)."""
    return str(account.profile.get("name") or account.customer_id)[:500]


def _put(rows: list[dict[str, Any]], key: str, row: dict[str, Any]) -> None:
    """``row`` among a batch's rows of its table, in place of an earlier one with its ``key``."""
    rows[:] = [r for r in rows if r[key] != row[key]]
    rows.append(row)


def _group(stored_events: list[StoredEvent]) -> Iterator[tuple[UUID, list[StoredEvent]]]:
    """Stored events in (aggregate, version) order, by aggregate."""
    for aggregate_id, group in groupby(stored_events, key=lambda e: e.originator_id):
        yield aggregate_id, list(group)


def _money(text: str) -> Decimal:
    return Decimal(text)
