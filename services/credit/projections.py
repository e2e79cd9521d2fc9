"""The credit service's read models and the projector that keeps them.

On SQLite they live in a file of their own beside the event store's, so that the
projector's transactions never hold up the saves of credit checks
(``shared.db.read_models_url``); on PostgreSQL, in the service's database.

Tables (plain SQL, indexed for the REST queries and the review):
- ``credit_accounts``: per customer, whether it is on hold, its recorded risk grade and
  score, the date of its last review; every customer credit knows (the review's candidates);
- ``credit_positions``: per customer and currency, open receivables, reserved (approved
  orders not yet invoiced), exposure, limit and available credit;
- ``credit_holds``: every hold with its reasons, who placed and released it, and when
  (``POST /holds/{hold_id}/release`` finds the customer here);
- ``credit_checks``: every answered credit check (order, decision, amount, reasons);
- ``credit_reviews``: the reviews run, with their counts;
- ``credit_warnings``: every early warning with its evidence, status and acknowledgements
  (``/warnings``, ``/watchlist``; ``POST /warnings/{id}/acknowledge`` finds the customer here);
- ``credit_securities``: every security with its kind, amount, drawn amount and dates
  (``POST /securities/{id}/release`` and ``/draw`` find the customer here);
- ``credit_projection_positions``: how far the projector has read the notification log,
  updated in the same transaction as the rows.

The projector moves a mirror of recently seen accounts forward with each event
(``shared.account_projector``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
)
from sqlalchemy.engine import Connection

from services.credit.domain import CreditAccount
from services.credit.domain.registry import REVIEW_REGISTRY_ID
from shared.account_projector import AccountProjector, Touched, optional_date, positions_table
from shared.db import Money, insert_rows, upsert

metadata = MetaData()

accounts = Table(
    "credit_accounts", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("on_hold", Boolean, nullable=False),
    Column("risk_grade", String(1)),
    Column("risk_score", Money),
    Column("last_review_on", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

positions_by_currency = Table(
    "credit_positions", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("open_receivables", Money, nullable=False),
    Column("reserved", Money, nullable=False),
    Column("exposure", Money, nullable=False),
    Column("limit_amount", Money),
    Column("available", Money),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

holds = Table(
    "credit_holds", metadata,
    Column("hold_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("placed_by", String(200), nullable=False),
    Column("note", String(2000)),
    Column("effective_date", Date),
    Column("status", String(20), nullable=False),
    Column("released_by", String(200)),
    Column("release_reason", String(2000)),
    Column("placed_at", DateTime(timezone=True)),
    Column("released_at", DateTime(timezone=True)),
    Index("ix_credit_holds_status", "status", "customer_id"),
)

checks = Table(
    "credit_checks", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("order_id", String(200), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("decision", String(20), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("checked_on", Date, nullable=False),
    Column("reserved_until", Date),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

securities = Table(
    "credit_securities", metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("security_id", String(200), primary_key=True),
    Column("kind", String(30), nullable=False),
    Column("currency", String(3)),
    Column("amount", Money),
    Column("drawn", Money, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date),
    Column("released_on", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_credit_securities_security_id", "security_id"),
)

warnings = Table(
    "credit_warnings", metadata,
    Column("warning_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("signal", String(40), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("status", String(10), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("hold", Boolean, nullable=False),
    Column("raised_on", Date, nullable=False),
    Column("cleared_on", Date),
    Column("acknowledgements", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_credit_warnings_status", "status", "customer_id"),
    Index("ix_credit_warnings_customer_id", "customer_id"),
)

reviews = Table(
    "credit_reviews", metadata,
    Column("as_of", Date, primary_key=True),
    Column("review_id", String(64), nullable=False),
    Column("summary", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

positions = positions_table("credit_projection_positions", metadata)

PROJECTOR_NAME = "credit-projections"
_HOLD_EVENTS = ("HoldPlaced", "HoldReasonsChanged", "HoldReleased")
_SECURITY_EVENTS = {"SecurityRegistered": "security", "SecurityReleased": "release", "SecurityDrawn": "draw"}
_WARNING_EVENTS = {"WarningRaised": "warning", "WarningCleared": "clearance",
                   "WarningAcknowledged": "acknowledgement"}


def _row_state(account: CreditAccount | None) -> tuple[Any, ...] | None:
    """What an account's ``credit_accounts`` row holds, but its ``updated_at``."""
    if account is None:
        return None
    risk = account.risk
    grade, score = (risk["grade"], risk["score"]) if risk else (None, None)
    return account.on_hold, grade, score, account.last_review_on


class _Touched(Touched[CreditAccount]):
    """An account touched by a batch, and the holds whose rows must be written."""

    __slots__ = ("holds", "row_changed_at", "securities", "warnings")

    def __init__(self, account: CreditAccount) -> None:
        super().__init__(account)
        self.holds: dict[str, Any] = {}  # hold id -> the instant it was placed in this batch (or None)
        # The account row is written only when an event changes it (a check changes only the
        # positions and the check rows), stamped with that event's instant: the same rows
        # whatever the batches, so a rebuild verifies against the live tables.
        self.row_changed_at: Any = None
        self.securities: dict[str, Any] = {}  # security id -> the instant of its last change
        self.warnings: dict[str, Any] = {}  # warning id -> the instant of its last change


@dataclass(slots=True)
class _Rows:
    """What a batch writes: the customers whose positions are replaced, and each table's rows."""

    customer_ids: list[str]
    accounts: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    placed_holds: list[dict[str, Any]]
    changed_holds: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    securities: list[dict[str, Any]]
    warnings: list[dict[str, Any]]


class CreditProjector(AccountProjector[CreditAccount]):
    """Keeps the credit read models, one transaction per batch of notifications."""

    name = PROJECTOR_NAME
    positions = positions

    def prepare(self, events: list[tuple[int, Any]], done: int) -> Callable[[Connection], None]:
        """The batch's rows, worked out before its transaction (see ``AccountProjector.apply``)."""
        touched: dict[UUID, _Touched] = {}
        check_rows: dict[tuple[str, str], dict[str, Any]] = {}
        review_rows: list[dict[str, Any]] = []
        for _position, event in events:
            if event.originator_id == REVIEW_REGISTRY_ID:
                if type(event).__name__ == "ReviewRecorded":
                    review = dict(event.review)
                    review_rows.append({"as_of": date.fromisoformat(review["as_of"]),
                                        "review_id": review["review_id"], "summary": review,
                                        "recorded_at": event.timestamp})
                continue
            self._on_account_event(event, touched, check_rows)
        rows = self._rows(touched, list(check_rows.values()), review_rows)
        return lambda conn: self._write(conn, rows)

    # ---------------------------------------------------------------- events

    def _on_account_event(self, event: Any, touched: dict[UUID, _Touched],
                          check_rows: dict[tuple[str, str], dict[str, Any]]) -> None:
        previous = self.previous(event)
        before = _row_state(previous)
        account = self.advance(event, previous)
        entry = self.touch(touched, event, account, _Touched)
        if _row_state(account) != before:
            entry.row_changed_at = event.timestamp
        kind = type(event).__name__
        if kind in _HOLD_EVENTS:
            hold_id = (event.hold if kind == "HoldPlaced" else event.change if kind == "HoldReasonsChanged"
                       else event.release)["hold_id"]
            if kind == "HoldPlaced":
                entry.holds[hold_id] = event.timestamp
            else:
                entry.holds.setdefault(hold_id, None)
                if kind == "HoldReleased":
                    entry.holds[f"released:{hold_id}"] = event.timestamp
        elif kind in _WARNING_EVENTS:
            entry.warnings[getattr(event, _WARNING_EVENTS[kind])["warning_id"]] = event.timestamp
        elif kind in _SECURITY_EVENTS:
            entry.securities[getattr(event, _SECURITY_EVENTS[kind])["security_id"]] = event.timestamp
        elif kind == "CreditChecked":
            check = event.check
            check_rows[check["customer_id"], check["order_id"]] = {
                "customer_id": check["customer_id"], "order_id": check["order_id"],
                "currency": check["currency"], "amount": Decimal(check["amount"]),
                "decision": check["decision"], "reasons": check["reasons"],
                "checked_on": date.fromisoformat(check["on"]),
                "reserved_until": optional_date(check["reserved_until"]),
                "recorded_at": event.timestamp,
            }

    # ---------------------------------------------------------------- writing

    def _rows(self, touched: dict[UUID, _Touched], check_rows: list[dict[str, Any]],
              review_rows: list[dict[str, Any]]) -> _Rows:
        account_rows, position_rows, placed_rows, changed_rows, security_rows = [], [], [], [], []
        warning_rows = []
        for entry in touched.values():
            account = entry.account
            for warning_id, changed_at in entry.warnings.items():
                warning = account.warnings[warning_id]
                warning_rows.append({
                    "warning_id": warning_id, "customer_id": account.customer_id, "signal": warning["signal"],
                    "severity": warning["severity"], "status": warning["status"],
                    "evidence": warning["evidence"], "hold": warning["hold"],
                    "raised_on": date.fromisoformat(warning["raised_on"]),
                    "cleared_on": optional_date(warning["cleared_on"]),
                    "acknowledgements": list(warning["acknowledgements"]), "updated_at": changed_at})
            for security_id, changed_at in entry.securities.items():
                security = account.securities[security_id]
                security_rows.append({
                    "customer_id": account.customer_id, "security_id": security_id, "kind": security.kind,
                    "currency": security.currency, "amount": security.amount, "drawn": security.drawn(),
                    "valid_from": security.valid_from, "valid_until": security.valid_until,
                    "released_on": security.released_on, "updated_at": changed_at})
            if entry.row_changed_at is not None:
                risk = account.risk
                account_rows.append({
                    "customer_id": account.customer_id, "on_hold": account.on_hold,
                    "risk_grade": risk["grade"] if risk else None,
                    "risk_score": Decimal(risk["score"]) if risk else None,
                    "last_review_on": account.last_review_on, "updated_at": entry.row_changed_at,
                })
            for figure in account.figures():
                position_rows.append({
                    "customer_id": account.customer_id, "currency": figure["currency"],
                    "open_receivables": Decimal(figure["open_receivables"]),
                    "reserved": Decimal(figure["reserved"]), "exposure": Decimal(figure["exposure"]),
                    "limit_amount": Decimal(figure["limit"]) if figure["limit"] is not None else None,
                    "available": Decimal(figure["available"]) if figure["available"] is not None else None,
                    "updated_at": entry.timestamp,
                })
            for hold_id, placed_at in entry.holds.items():
                if hold_id.startswith("released:"):
                    continue
                hold = account.holds[hold_id]
                row = {
                    "hold_id": hold_id, "customer_id": account.customer_id, "kind": hold.kind,
                    "reasons": list(hold.reasons), "placed_by": hold.placed_by, "note": hold.note,
                    "effective_date": optional_date(hold.effective_date), "status": hold.status,
                    "released_by": hold.released_by, "release_reason": hold.release_reason,
                    "released_at": entry.holds.get(f"released:{hold_id}"),
                }
                if placed_at is not None:
                    placed_rows.append({**row, "placed_at": placed_at})
                else:
                    changed_rows.append(row)
        return _Rows([entry.account.customer_id for entry in touched.values()], account_rows, position_rows,
                     placed_rows, changed_rows, check_rows, review_rows, security_rows, warning_rows)

    def _write(self, conn: Connection, rows: _Rows) -> None:
        upsert(conn, accounts, rows.accounts, ["customer_id"])
        customer_ids = rows.customer_ids
        for start in range(0, len(customer_ids), 500):
            conn.execute(positions_by_currency.delete().where(
                positions_by_currency.c.customer_id.in_(customer_ids[start:start + 500])))
        insert_rows(conn, positions_by_currency, rows.positions)
        upsert(conn, holds, rows.placed_holds, ["hold_id"])
        upsert(conn, holds, rows.changed_holds, ["hold_id"])
        upsert(conn, checks, rows.checks, ["customer_id", "order_id"])
        upsert(conn, reviews, rows.reviews, ["as_of"])
        upsert(conn, securities, rows.securities, ["customer_id", "security_id"])
        upsert(conn, warnings, rows.warnings, ["warning_id"])
