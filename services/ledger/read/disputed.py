"""What the ledger's read side shows disputed on an invoice: ``shared.open_items.disputed_part``
(the disputed amount capped at the open amount, never below zero), and nothing on a cancelled
invoice; in Python (``shown_disputed``) and in SQL (``shown_disputed_sql``), which
tests/unit/test_disputed_rule.py holds equal on a grid of values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import case, or_

from shared.money import ZERO
from shared.open_items import disputed_part


def shown_disputed(disputed: Decimal, open_amount: Decimal, status: str | None = None) -> Decimal:
    """The invoice's disputed amount as shown: ``disputed_part``, zero when it is cancelled."""
    return ZERO if status == "cancelled" else disputed_part(disputed, open_amount)


def shown_disputed_sql(disputed: Any, open_amount: Any) -> Any:
    """``disputed_part`` as a SQL expression of two money columns (or expressions of them);
    the queries that use it leave cancelled invoices out themselves."""
    return case(
        (or_(disputed <= 0, open_amount <= 0), 0), (disputed < open_amount, disputed), else_=open_amount
    )
