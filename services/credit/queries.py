"""Read-side queries over the credit read models: review candidates, holds, checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from services.credit.projections import (
    PROJECTOR_NAME,
    accounts,
    checks,
    holds,
    positions,
    positions_by_currency,
    securities,
    warnings,
)
from shared.db import plain_row


def projector_position(conn: Connection) -> int:
    value = conn.execute(select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)).scalar()
    return int(value or 0)


def review_candidates(conn: Connection) -> Iterator[str]:
    """Every customer credit knows, in id order: time moves every account's figures
    (reservations and limits expire, invoices age, the risk score follows the date)."""
    yield from conn.execute(select(accounts.c.customer_id).order_by(accounts.c.customer_id)).scalars()


def prediction_candidates(conn: Connection) -> list[str]:
    """The customers with open receivables, in id order: what the ledger is asked to predict."""
    query = (select(positions_by_currency.c.customer_id).where(positions_by_currency.c.open_receivables > 0)
             .distinct().order_by(positions_by_currency.c.customer_id))
    return list(conn.execute(query).scalars())


def hold_customer(conn: Connection, hold_id: str) -> str | None:
    found = conn.execute(select(holds.c.customer_id).where(holds.c.hold_id == hold_id)).scalar()
    return str(found) if found is not None else None


def security_customers(conn: Connection, security_id: str) -> list[str]:
    """The customers with a security of this id (one, unless two chose the same id)."""
    query = select(securities.c.customer_id).where(securities.c.security_id == security_id)
    return sorted(str(c) for c in conn.execute(query).scalars())


def find_holds(conn: Connection, *, status: str | None, customer_id: str | None,
               limit: int) -> list[dict[str, Any]]:
    query = select(holds)
    if status is not None:
        query = query.where(holds.c.status == status)
    if customer_id is not None:
        query = query.where(holds.c.customer_id == customer_id)
    query = query.order_by(holds.c.placed_at.desc(), holds.c.hold_id).limit(limit)
    return [plain_row(row._mapping) for row in conn.execute(query)]


def customer_checks(conn: Connection, customer_id: str, limit: int) -> list[dict[str, Any]]:
    query = (select(checks).where(checks.c.customer_id == customer_id)
             .order_by(checks.c.recorded_at.desc(), checks.c.order_id).limit(limit))
    return [plain_row(row._mapping) for row in conn.execute(query)]


SEVERITY_RANK = {"high": 3, "medium": 2, "low": 1}


def warning_customer(conn: Connection, warning_id: str) -> str | None:
    found = conn.execute(select(warnings.c.customer_id).where(warnings.c.warning_id == warning_id)).scalar()
    return str(found) if found is not None else None


def find_warnings(conn: Connection, *, status: str | None, customer_id: str | None, severity: str | None,
                  limit: int) -> list[dict[str, Any]]:
    """The warnings, newest raised first."""
    query = select(warnings)
    for column, value in ((warnings.c.status, status), (warnings.c.customer_id, customer_id),
                          (warnings.c.severity, severity)):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(warnings.c.raised_on.desc(), warnings.c.warning_id).limit(limit)
    return [plain_row(row._mapping) for row in conn.execute(query)]


def watchlist(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The customers with open high or medium warnings, worst first: by their worst severity,
    then how many high and medium warnings they have, then their largest exposure in any
    currency; each with its grade, its positions and its open warnings."""
    open_rows = [plain_row(row._mapping) for row in conn.execute(
        select(warnings).where(warnings.c.status == "open", warnings.c.severity.in_(("high", "medium")))
        .order_by(warnings.c.customer_id, warnings.c.raised_on, warnings.c.warning_id))]
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in open_rows:
        by_customer.setdefault(row["customer_id"], []).append(row)
    if not by_customer:
        return []
    ids = sorted(by_customer)
    grades = {row.customer_id: (row.risk_grade, row.risk_score, row.on_hold) for row in conn.execute(
        select(accounts.c.customer_id, accounts.c.risk_grade, accounts.c.risk_score, accounts.c.on_hold)
        .where(accounts.c.customer_id.in_(ids)))}
    exposures: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(select(positions_by_currency).where(positions_by_currency.c.customer_id.in_(ids))
                            .order_by(positions_by_currency.c.customer_id, positions_by_currency.c.currency)):
        exposures.setdefault(row.customer_id, []).append(
            {"currency": row.currency, "exposure": row.exposure, "limit": row.limit_amount})
    entries = []
    for customer_id, rows in by_customer.items():
        grade, score, on_hold = grades.get(customer_id, (None, None, False))
        ranks = [SEVERITY_RANK[r["severity"]] for r in rows]
        largest = max((p["exposure"] for p in exposures.get(customer_id, [])), default=0)
        entries.append(((-max(ranks), -ranks.count(3), -ranks.count(2), -largest, customer_id), {
            "customer_id": customer_id, "worst_severity": rows[ranks.index(max(ranks))]["severity"],
            "risk_grade": grade, "risk_score": score, "on_hold": bool(on_hold),
            "positions": exposures.get(customer_id, []), "warnings": rows}))
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])][:limit]
