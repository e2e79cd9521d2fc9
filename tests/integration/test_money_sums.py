"""Sums of money in SQL (``shared.db.money_sum`` run by ``execute_sums``) are exact on every
database, beyond what a BIGINT of ten-thousandths holds, and native SQL when they fit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    event,
    insert,
    select,
    union_all,
)

from services.dunning.projections import invoices
from services.dunning.projections import metadata as dunning_tables
from services.dunning.queries import worklist
from shared.db import BIGINT_MAX, MONEY_SCALE, Money, PreparedRead, execute_sums, make_engine, money_sum

AT_CEILING = Decimal("999999999999.99")  # the largest amount one message may carry

metadata = MetaData()
entries = Table(
    "money_sum_entries", metadata,
    Column("id", Integer, primary_key=True),
    Column("book", String(10), nullable=False),
    Column("amount", Money, nullable=False),
    Column("weight", Integer, nullable=False),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def fill(engine: Engine, rows: list[tuple[str, Decimal, int]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(entries), [{"book": book, "amount": amount, "weight": weight}
                                       for book, amount, weight in rows])


def statements(engine: Engine) -> list[str]:
    """The SQL of every statement the engine runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def by_book(*columns: Any) -> Any:
    return select(entries.c.book, *columns).group_by(entries.c.book).order_by(entries.c.book)


def test_a_sum_beyond_a_bigint_of_ten_thousandths_is_exact_to_the_cent(engine: Engine) -> None:
    amounts = [AT_CEILING - Decimal(i % 97) / 100 for i in range(1000)]
    assert sum(amounts) * 10**MONEY_SCALE > BIGINT_MAX
    fill(engine, [("big", amount, 1) for amount in amounts] + [("small", Decimal("12.34"), 1)]
         + [("owed back", -amount, 1) for amount in amounts])
    with engine.connect() as conn:
        rows = execute_sums(conn, by_book(money_sum(entries.c.amount))).all()
    assert rows == [("big", sum(amounts)), ("owed back", -sum(amounts)), ("small", Decimal("12.34"))]


def test_a_sum_that_fits_runs_once_as_native_sql(engine: Engine) -> None:
    fill(engine, [("a", Decimal("0.01"), 1), ("a", Decimal("1000.00"), 1), ("b", AT_CEILING, 1)])
    seen = statements(engine)
    with engine.connect() as conn:
        rows = execute_sums(conn, by_book(money_sum(entries.c.amount))).all()
    assert rows == [("a", Decimal("1000.01")), ("b", AT_CEILING)]
    assert len(seen) == 1 and "sum(" in seen[0] and "money_sum_exact" not in seen[0]


def test_no_rows_sum_to_zero(engine: Engine) -> None:
    with engine.connect() as conn:
        assert execute_sums(conn, select(money_sum(entries.c.amount))).scalar_one() == Decimal(0)


def test_sums_of_sums_compare_and_order_beyond_a_bigint(engine: Engine) -> None:
    """Partial sums added up again, a HAVING on a sum, and an ORDER BY on positive sums of
    different lengths beyond 64 bits (on SQLite: text the outer sum and the order must read)."""
    nineteen_digits = [AT_CEILING] * 950  # 9.5e18 ten-thousandths
    twenty_digits = [AT_CEILING] * 2000 + [Decimal("-0.01")]  # 2e19
    fill(engine, [("nineteen", amount, 1) for amount in nineteen_digits]
         + [("twenty", amount, 1) for amount in twenty_digits]
         + [("nets to 0", AT_CEILING, 1)] * 2000 + [("nets to 0", -AT_CEILING, 1)] * 2000)
    # gains and losses apart: each partial of "nets to 0" is beyond 64 bits, of either sign
    halves = [select(entries.c.book, money_sum(entries.c.amount).label("total")).where(sign)
              .group_by(entries.c.book) for sign in (entries.c.amount > 0, entries.c.amount < 0)]
    partial = union_all(*halves).subquery()
    total = money_sum(partial.c.total)
    query = (select(partial.c.book, total.label("total")).group_by(partial.c.book)
             .having(total != 0).order_by(total.desc()))
    with engine.connect() as conn:
        rows = execute_sums(conn, query).all()
    assert rows == [("twenty", sum(twenty_digits)), ("nineteen", sum(nineteen_digits))]


def test_a_weighted_sum_is_exact_where_the_sum_leaves_a_bigint(engine: Engine) -> None:
    amounts = [AT_CEILING - Decimal(i) for i in range(200)]
    fill(engine, [("weighted", amount, 5) for amount in amounts] + [("light", Decimal("0.03"), 3)])
    query = by_book(money_sum(entries.c.amount, weight=entries.c.weight),
                    money_sum(entries.c.amount))
    with engine.connect() as conn:
        rows = execute_sums(conn, query).all()
    assert rows == [("light", Decimal("0.09"), Decimal("0.03")),
                    ("weighted", sum(amounts) * 5, sum(amounts))]


def test_on_sqlite_a_weighted_amount_beyond_a_bigint_is_summed_exactly(tmp_path: Path) -> None:
    """SQLite turns one product beyond 64 bits into floating point: the sum is taken again
    exactly. (SQLite only: on PostgreSQL the BIGINT product itself is out of range.)"""
    engine = make_engine(f"sqlite:///{tmp_path / 'sums.db'}")
    metadata.create_all(engine)
    fill(engine, [("heavy", AT_CEILING, 1000), ("heavy", Decimal("0.01"), 1000)])
    with engine.connect() as conn:
        total = execute_sums(conn, select(money_sum(entries.c.amount, weight=entries.c.weight))).scalar_one()
    engine.dispose()
    assert total == (AT_CEILING + Decimal("0.01")) * 1000


def test_the_dunning_worklist_weighs_a_customer_at_its_ceiling_exactly(database_url: str) -> None:
    """A customer's open items at the ceiling (a hundred invoices near it), dunned at level 9:
    the amount at risk (x 10) is beyond 64 bits of ten-thousandths, and still comes first."""
    engine = make_engine(database_url)
    dunning_tables.create_all(engine)
    now = datetime(2025, 1, 1, tzinfo=UTC)

    def invoice(customer: str, number: int, amount: Decimal, level: int) -> dict[str, Any]:
        return {"invoice_id": f"{customer}-{number}", "customer_id": customer, "currency": "CHF",
                "amount": amount, "open_amount": amount, "disputed_amount": Decimal("0.01"),
                "status": "open", "issue_date": date(2024, 1, 1), "due_date": date(2024, 2, 1),
                "level": level, "last_noticed": None, "escalated": False, "promise_id": None,
                "updated_at": now}

    big = [AT_CEILING - i for i in range(100)]
    try:
        with engine.begin() as conn:
            conn.execute(insert(invoices), [invoice("BIG", i, amount, 9) for i, amount in enumerate(big)]
                         + [invoice("SMALL", 0, Decimal("100.00"), 1)])
            rows = worklist(conn, date(2025, 1, 1), 10)
    finally:
        engine.dispose()
    dunnable = [amount - Decimal("0.01") for amount in big]
    assert [(r["customer_id"], r["overdue_amount"], r["amount_at_risk"]) for r in rows] == [
        ("BIG", sum(dunnable), sum(dunnable) * 10),
        ("SMALL", Decimal("99.99"), Decimal("199.98")),
    ]


# ---------------------------------------------------------------------- PreparedRead


def prepared_by_book() -> PreparedRead:
    return PreparedRead(
        select(entries.c.book, money_sum(entries.c.amount).label("total"),
               money_sum(case((entries.c.book.in_(("big", "small")), entries.c.amount), else_=0)))
        .where(entries.c.weight >= bindparam("weight"))
        .group_by(entries.c.book).order_by(entries.c.book))


def test_a_prepared_read_answers_what_execute_sums_does(engine: Engine) -> None:
    fill(engine, [("a", Decimal("0.01"), 1), ("a", Decimal("1000.00"), 2), ("b", AT_CEILING, 3),
                  ("small", Decimal("-12.34"), 2)])
    read = prepared_by_book()
    with engine.connect() as conn:
        for weight in (0, 2, 3, 4):
            expected = [tuple(row) for row in execute_sums(conn, read.statement.params(weight=weight))]
            assert read.all(conn, {"weight": weight}) == expected
            assert all(type(value) is Decimal for row in expected for value in row[1:])
    assert read.keys[:2] == ["book", "total"]


def test_a_prepared_read_beyond_a_bigint_is_exact(engine: Engine) -> None:
    amounts = [AT_CEILING - Decimal(i % 97) / 100 for i in range(1000)]
    fill(engine, [("big", amount, 1) for amount in amounts] + [("small", Decimal("12.34"), 1)])
    with engine.connect() as conn:
        assert prepared_by_book().all(conn, {"weight": 1}) == [
            ("big", sum(amounts), sum(amounts)), ("small", Decimal("12.34"), Decimal("12.34"))]


def test_a_prepared_read_takes_only_its_parameters(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(KeyError):
        prepared_by_book().all(conn, {"weight": 1, "book": "a"})


def test_a_prepared_read_fails_as_conn_execute_does(engine: Engine) -> None:
    """The driver's error wrapped as SQLAlchemy wraps it (an OperationalError is a 503)."""
    gone = Table("money_sum_gone", MetaData(), Column("id", Integer))
    statement = select(gone.c.id).where(gone.c.id == bindparam("id"))
    with engine.connect() as conn:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as by_sqlalchemy:
            conn.execute(statement, {"id": 1})
        conn.rollback()
        with pytest.raises(sqlalchemy.exc.DBAPIError) as prepared:
            PreparedRead(statement).all(conn, {"id": 1})
    assert type(prepared.value) is type(by_sqlalchemy.value)
    assert type(prepared.value.orig) is type(by_sqlalchemy.value.orig)
