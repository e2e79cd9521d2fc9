"""The bulk writers' fast bind processors give exactly what SQLAlchemy's own would."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import JSON, Date, DateTime
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from shared.db import Money, _bind_processor

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}

SAMPLES: list[tuple[Any, list[Any]]] = [
    (Date(), [None, date(2024, 2, 29), date(1, 1, 1), date(9999, 12, 31)]),
    (DateTime(timezone=True), [
        None, datetime(2024, 6, 30, 12, 0, tzinfo=UTC),
        datetime(2024, 6, 30, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 1, 1, 0, 0, 0, 1), datetime(999, 1, 1, 1, 1, 1),
    ]),
    (JSON(), [None, {}, {"country": "DE", "région": "Île-de-France"}, {"net_days": 30, "x": [1, None]}]),
]


def _sqlalchemy_processor(column_type: Any, dialect: Dialect) -> Any:
    return column_type.dialect_impl(dialect).bind_processor(dialect)


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize(("column_type", "values"), SAMPLES, ids=["date", "datetime", "json"])
def test_fast_binds_equal_sqlalchemys(dialect_name: str, column_type: Any, values: list[Any]) -> None:
    dialect = DIALECTS[dialect_name]
    fast = _bind_processor(column_type, dialect)
    reference = _sqlalchemy_processor(column_type, dialect)
    for value in values:
        expected = value if reference is None else reference(value)
        got = value if fast is None else fast(value)
        if isinstance(expected, str) and isinstance(column_type, JSON):  # same document, spacing aside
            assert json.loads(got) == json.loads(expected)
        elif hasattr(expected, "obj"):  # psycopg's Json wrapper: SQLAlchemy's own processor
            assert json.loads(got) == expected.obj
        else:
            assert got == expected, (dialect_name, value)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_money_is_scaled_exactly_and_refuses_more_than_four_places(dialect_name: str) -> None:
    fast = _bind_processor(Money(), DIALECTS[dialect_name])
    assert fast is not None
    assert fast(Decimal("1250.00")) == 12_500_000
    assert fast(Decimal("-0.0001")) == -1
    assert fast(Decimal("123456789012.3456")) == 1_234_567_890_123_456
    assert fast(Decimal("1E+3")) == 10_000_000
    assert fast(None) is None
    with pytest.raises(ValueError, match="more than 4 decimal places"):
        fast(Decimal("0.00001"))


def test_a_datetime_in_a_sqlite_date_column_is_refused_like_sqlalchemy_does() -> None:
    fast = _bind_processor(Date(), DIALECTS["sqlite"])
    assert fast is not None
    with pytest.raises(TypeError):
        fast(datetime(2024, 1, 1, tzinfo=UTC))


def test_a_remembered_instant_is_not_given_for_an_equal_one_in_another_zone() -> None:
    fast = _bind_processor(DateTime(timezone=True), DIALECTS["sqlite"])
    reference = _sqlalchemy_processor(DateTime(timezone=True), DIALECTS["sqlite"])
    assert fast is not None
    noon = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
    same_instant = datetime(2024, 6, 30, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert noon == same_instant
    for value in (noon, same_instant, noon, same_instant.replace(tzinfo=None)):
        assert fast(value) == reference(value)


def test_bulk_upserts_in_multi_row_statements_equal_row_by_row() -> None:
    """SQLite's multi-row statements (halving sizes; a key twice in one statement) give what one
    statement per row gives."""
    from sqlalchemy import Column, MetaData, String, Table, create_engine, select

    from shared.db import upsert

    table = Table("t", MetaData(), Column("k", String, primary_key=True), Column("v", String),
                  Column("n", Money), Column("d", Date))
    rows = [{"k": f"k{i % 311}", "v": f"v{i}", "n": Decimal(i) / 4, "d": date(2024, 1, 1 + i % 28)}
            for i in range(700)]
    results = []
    for bulk in (True, False):
        engine = create_engine("sqlite://")
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            for start in range(0, len(rows), 333):
                chunk = rows[start:start + 333]
                if bulk:
                    upsert(conn, table, chunk, ["k"], increment=["n"])
                else:
                    for row in chunk:
                        upsert(conn, table, [row], ["k"], increment=["n"])
            results.append(conn.execute(select(table).order_by(table.c.k)).all())
        engine.dispose()
    assert results[0] == results[1]
    assert len(results[0]) == 311
