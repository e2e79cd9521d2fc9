"""Aging against hand-computed books, on SQLite and PostgreSQL, by every query strategy.

Book (as of 2024-04-30), customer C1 in EUR: one invoice at each bucket edge (due today,
30 and 31 days past due, 120 and 121), one due in the future, one partly paid, one fully
disputed, one issued after as_of; C1 also owes 80 USD; C2 has 75 EUR of unapplied cash.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from services.ledger.read import aging as aging_module
from services.ledger.read.aging import AgingRequestError, Buckets, GroupBy, aging
from services.ledger.read.projections import movements
from tests.integration.ledger_books import LedgerBook, event, invoice, payment

AS_OF = date(2024, 4, 30)
STRATEGIES = ("current", "movements", "spans")


@pytest.fixture
def book(database_url: str) -> Iterator[LedgerBook]:
    book = LedgerBook(database_url)
    book.post(
        invoice("C1", "I-D0", "100.00", "2024-04-01", "2024-04-30", region="north"),
        invoice("C1", "I-D30", "200.00", "2024-03-01", "2024-03-31", region="south"),
        invoice("C1", "I-D31", "300.00", "2024-03-01", "2024-03-30"),
        invoice("C1", "I-FUT", "50.00", "2024-04-20", "2024-06-01"),
        invoice("C1", "I-D120", "400.00", "2023-12-01", "2024-01-01"),
        invoice("C1", "I-D121", "500.00", "2023-12-01", "2023-12-31"),
        invoice("C1", "I-PART", "1000.00", "2024-01-30", "2024-02-29"),
        invoice("C1", "I-DISP", "250.00", "2024-03-11", "2024-04-10"),
        invoice("C1", "I-USD", "80.00", "2024-03-02", "2024-04-01", currency="USD"),
        invoice("C1", "I-LATER", "999.00", "2024-05-05", "2024-06-04"),
    )
    book.post(
        payment("C1", "P1", "600.00", "2024-03-15", to="I-PART"),
        event("dispute.opened", "d-1", customer_id="C1", dispute_id="D1", invoice_id="I-DISP",
              amount="250.00", opened_date="2024-04-15", reason="damaged"),
        payment("C2", "P3", "75.00", "2024-04-25"),
    )
    yield book
    book.close()


def rows(book: LedgerBook, **options: Any) -> list[tuple[Any, ...]]:
    """Aging rows as comparable tuples; every strategy must give them (without known_at)."""
    answers = []
    strategies = STRATEGIES if options.get("known_at") is None else ("movements",)
    for strategy in strategies:
        with book.engine.connect() as conn:
            page = aging(conn, options.get("as_of", AS_OF),
                         **{k: v for k, v in options.items() if k != "as_of"}, strategy=strategy)
        answers.append([
            (r.group, r.currency, {k: str(v) for k, v in r.buckets.items() if v},
             str(r.disputed), str(r.total), None if r.unapplied_cash is None else str(r.unapplied_cash))
            for r in page.rows
        ])
    assert all(answer == answers[0] for answer in answers), answers
    return answers[0]


def d(text: str) -> str:
    return str(Decimal(text).quantize(Decimal("0.0001")))


def test_the_default_buckets_by_currency(book: LedgerBook) -> None:
    assert rows(book) == [
        ("EUR", "EUR", {
            "current": d("150"),   # due today (day 0) 100 + due in the future 50
            "1-30": d("450"),      # day 30: 200, fully disputed day 20: 250
            "31-60": d("300"),     # day 31
            "61-90": d("400"),     # 1000 less 600 paid, day 61
            "91-120": d("400"),    # day 120
            "120+": d("500"),      # day 121
        }, d("250"), d("2200"), d("75")),
        ("USD", "USD", {"1-30": d("80")}, d("0"), d("80"), d("0")),
    ]


def test_custom_edges_name_the_buckets(book: LedgerBook) -> None:
    assert Buckets.parse("15,45").names == ["current", "1-15", "16-45", "45+"]
    eur = rows(book, buckets=Buckets.parse("15,45"), currency="EUR")
    assert eur == [("EUR", "EUR", {"current": d("150"), "16-45": d("750"), "45+": d("1300")},
                    d("250"), d("2200"), d("75"))]


def test_by_customer_shows_unapplied_cash_and_pages_by_keyset(book: LedgerBook) -> None:
    everything = rows(book, group_by=GroupBy("customer"))
    assert [(r[0], r[1], r[4], r[5]) for r in everything] == [
        ("C1", "EUR", d("2200"), d("0")), ("C1", "USD", d("80"), d("0")), ("C2", "EUR", d("0"), d("75")),
    ]
    for strategy in STRATEGIES:
        seen, cursor = [], None
        with book.engine.connect() as conn:
            while True:
                page = aging(conn, AS_OF, group_by=GroupBy("customer"), limit=1, cursor=cursor,
                             strategy=strategy)
                seen += [(r.group, r.currency) for r in page.rows]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        assert seen == [("C1", "EUR"), ("C1", "USD"), ("C2", "EUR")]


def test_by_invoice_attribute(book: LedgerBook) -> None:
    assert [(r[0], r[1], r[4], r[5]) for r in rows(book, group_by=GroupBy.parse("region"))] == [
        (None, "EUR", d("1900"), None), (None, "USD", d("80"), None),
        ("north", "EUR", d("100"), None), ("south", "EUR", d("200"), None),
    ]
    assert rows(book, group_by=GroupBy.parse("attributes.region"), currency="USD") == [
        (None, "USD", {"1-30": d("80")}, d("0"), d("80"), None)
    ]


def test_aging_moves_with_as_of(book: LedgerBook) -> None:
    # before the payment and the dispute took effect: issued by then are I-D30 and I-D31
    # (both current), I-PART (day 1), I-D120 (day 60) and I-D121 (day 61)
    (eur,) = rows(book, as_of=date(2024, 3, 1), currency="EUR")
    assert eur[2] == {"current": d("500"), "1-30": d("1000"), "31-60": d("400"), "61-90": d("500")}
    assert (eur[3], eur[4], eur[5]) == (d("0"), d("2400"), d("0"))
    (eur,) = rows(book, as_of=date(2024, 5, 5), currency="EUR")
    assert eur[4] == d("3199") and eur[2]["current"] == d("1049")


@pytest.mark.parametrize(("text", "field"), [
    ("30,30", "buckets"), ("0,30", "buckets"), ("30,x", "buckets"), ("60,30", "buckets"),
])
def test_bad_edges_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(AgingRequestError) as refused:
        Buckets.parse(text)
    assert refused.value.field == field


def test_a_bad_group_or_cursor_is_refused() -> None:
    with pytest.raises(AgingRequestError, match="group_by"):
        GroupBy.parse('region"]')
    with pytest.raises(AgingRequestError, match="cursor"):
        from services.ledger.read.aging import decode_cursor
        decode_cursor("not-a-cursor")


def test_auto_picks_the_strategy_by_how_many_movements_are_dated_later(
    book: LedgerBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    with book.engine.connect() as conn:
        later = conn.execute(
            select(func.count()).select_from(movements).where(movements.c.effective_date > AS_OF)
        ).scalar_one()
        assert later > 0

        def picked(current_below: int, spans_below: int, **options: Any) -> str:
            monkeypatch.setattr(aging_module, "CURRENT_STRATEGY_MAX_CORRECTIONS", current_below)
            monkeypatch.setattr(aging_module, "SPANS_STRATEGY_MAX_CORRECTIONS", spans_below)
            return aging(conn, AS_OF, **options).strategy

        assert picked(later + 1, later + 2) == "current"
        assert picked(later, later + 1) == "spans"
        assert picked(later - 1, later) == "movements"
        assert picked(later + 1, later + 2, known_at=datetime.now(UTC)) == "movements"
