"""Read-side queries over the credit read models: review candidates, holds, checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from services.credit.projections import PROJECTOR_NAME, accounts, checks, holds, positions, securities
from shared.db import plain_row


def projector_position(conn: Connection) -> int:
    value = conn.execute(select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)).scalar()
    return int(value or 0)


def review_candidates(conn: Connection) -> Iterator[str]:
    """Every customer credit knows, in id order: time moves every account's figures
    (reservations and limits expire, invoices age, the risk score follows the date)."""
    yield from conn.execute(select(accounts.c.customer_id).order_by(accounts.c.customer_id)).scalars()


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
