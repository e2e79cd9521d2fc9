"""The disputed-capped rule has one definition (``shared.open_items.disputed_part``); the
ledger's read side shows it in Python and in SQL, and the three agree on every value."""

from __future__ import annotations

from decimal import Decimal
from itertools import product

import pytest
from sqlalchemy import create_engine, literal, select

from services.ledger.read.disputed import shown_disputed, shown_disputed_sql
from shared.open_items import disputed_part

# amounts as the read models keep them (integers of 1/10,000), negatives and zero included
GRID = [-150_000, -1, 0, 1, 99_999, 100_000, 100_001, 250_000]


def test_disputed_part_is_the_disputed_amount_capped_at_the_open_amount() -> None:
    for disputed, open_amount in product(GRID, GRID):
        part = disputed_part(Decimal(disputed), Decimal(open_amount))
        assert part == max(0, min(disputed, open_amount))
        assert Decimal(0) <= part <= max(Decimal(0), Decimal(open_amount))


@pytest.mark.parametrize("status", ["open", "partially_paid", "paid", "written_off", None])
def test_the_read_side_shows_disputed_part(status: str | None) -> None:
    for disputed, open_amount in product(GRID, GRID):
        assert shown_disputed(Decimal(disputed), Decimal(open_amount), status) == disputed_part(
            Decimal(disputed), Decimal(open_amount))


def test_a_cancelled_invoice_shows_nothing_disputed() -> None:
    for disputed, open_amount in product(GRID, GRID):
        assert shown_disputed(Decimal(disputed), Decimal(open_amount), "cancelled") == 0


def test_the_sql_rule_agrees_with_disputed_part() -> None:
    pairs = list(product(GRID, GRID))
    query = select(*(shown_disputed_sql(literal(d), literal(o)) for d, o in pairs))
    with create_engine("sqlite://").connect() as conn:
        row = conn.execute(query).one()
    assert [Decimal(value) for value in row] == [disputed_part(Decimal(d), Decimal(o)) for d, o in pairs]
