"""As of a business date and as known at an instant: backdated credit, payment, reversal,
cancellation; open items, invoices, balances, aging and metrics (SQLite and PostgreSQL).

Customer C3, EUR. Recorded in four steps:
  T1: X1 1000.00 issued 2024-03-01 due 2024-03-31
  T2: credit note CN1 300.00 on X1, dated 2024-03-15 (recorded later, effective earlier)
  T3: X2 500.00 issued 2024-04-01 due 2024-05-01; payment PY 700.00 on 2024-04-20 settles X1
  T4: PY reversed effective 2024-04-25 (X1 open 700 again); X2 cancelled effective 2024-04-10
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pytest

from services.ledger.read import queries
from services.ledger.read.aging import aging
from services.ledger.read.receivables_metrics import _metrics, receivables_metrics
from tests.integration.ledger_books import LedgerBook, event, invoice, payment


@dataclass
class Instants:
    t1: datetime
    t2: datetime
    t3: datetime
    t4: datetime


@pytest.fixture
def book(database_url: str) -> Iterator[tuple[LedgerBook, Instants]]:
    book = LedgerBook(database_url)
    t1 = book.post(invoice("C3", "X1", "1000.00", "2024-03-01", "2024-03-31"))
    t2 = book.post(event("credit_note.issued", "cn-1", customer_id="C3", credit_note_id="CN1",
                         currency="EUR", amount="300.00", issue_date="2024-03-15", invoice_id="X1"))
    t3 = book.post(invoice("C3", "X2", "500.00", "2024-04-01", "2024-05-01"),
                   payment("C3", "PY", "700.00", "2024-04-20"))
    t4 = book.post(
        event("payment.reversed", "rev-PY", customer_id="C3", payment_id="PY",
              effective_date="2024-04-25", reason="bounced"),
        event("invoice.cancelled", "cancel-X2", customer_id="C3", invoice_id="X2",
              effective_date="2024-04-10", reason="duplicate"),
    )
    assert t1 < t2 < t3 < t4
    yield book, Instants(t1, t2, t3, t4)
    book.close()


def open_amount(book: LedgerBook, invoice_id: str, as_of: date | None = None,
                known_at: datetime | None = None) -> Decimal | None:
    with book.engine.connect() as conn:
        row = queries.invoice(conn, invoice_id, as_of, known_at)
    return None if row is None else row["open_amount"]


def aged_total(book: LedgerBook, as_of: date, known_at: datetime | None = None) -> Decimal:
    with book.engine.connect() as conn:
        page = aging(conn, as_of, known_at=known_at, currency="EUR")
    return sum((r.total for r in page.rows), Decimal(0))


def test_a_backdated_credit_note_changes_last_months_as_of_but_not_what_was_known_before(
    book: tuple[LedgerBook, Instants],
) -> None:
    ledger, t = book
    assert open_amount(ledger, "X1", date(2024, 3, 20)) == Decimal("700")
    assert open_amount(ledger, "X1", date(2024, 3, 20), t.t1) == Decimal("1000")
    assert open_amount(ledger, "X1", date(2024, 3, 10)) == Decimal("1000")  # before its date
    # the same through the aging of mid-April (X1 is 15 days past due)
    assert aged_total(ledger, date(2024, 4, 15), t.t1) == Decimal("1000")
    assert aged_total(ledger, date(2024, 4, 15), t.t2) == Decimal("700")
    with ledger.engine.connect() as conn:
        (row,) = aging(conn, date(2024, 4, 15), known_at=t.t2).rows
    assert row.buckets["1-30"] == Decimal("700")


def test_a_payment_and_its_reversal(book: tuple[LedgerBook, Instants]) -> None:
    ledger, t = book
    with ledger.engine.connect() as conn:
        paid = queries.invoice(conn, "X1", known_at=t.t3)
        now = queries.invoice(conn, "X1")
        between = queries.invoice(conn, "X1", date(2024, 4, 22))
    assert paid is not None and now is not None and between is not None
    assert (paid["status"], paid["open_amount"], paid["settled_date"]) == ("paid", 0, date(2024, 4, 20))
    assert (now["status"], now["open_amount"], now["settled_date"]) == ("partially_paid", 700, None)
    assert (between["status"], between["settled_date"]) == ("paid", date(2024, 4, 20))
    assert aged_total(ledger, date(2024, 4, 22)) == Decimal("0")
    assert aged_total(ledger, date(2024, 4, 26)) == Decimal("700")
    assert aged_total(ledger, date(2024, 4, 26), t.t3) == Decimal("500")  # X2 not yet cancelled


def test_a_cancellation(book: tuple[LedgerBook, Instants]) -> None:
    ledger, t = book
    assert open_amount(ledger, "X2") == Decimal("0")
    assert open_amount(ledger, "X2", date(2024, 4, 5)) == Decimal("500")  # cancelled on 04-10
    assert open_amount(ledger, "X2", known_at=t.t3) == Decimal("500")
    assert open_amount(ledger, "X2", known_at=t.t2) is None  # not yet issued then
    assert open_amount(ledger, "X2", as_of=date(2024, 3, 31)) is None  # not issued by then
    with ledger.engine.connect() as conn:
        cancelled = queries.invoice(conn, "X2", date(2024, 4, 30))
    assert cancelled is not None and cancelled["status"] == "cancelled"


def test_open_items_as_of_and_as_known_at(book: tuple[LedgerBook, Instants]) -> None:
    ledger, t = book

    def items(as_of: date, known_at: datetime | None = None) -> list[tuple[str, str, str, int, str]]:
        with ledger.engine.connect() as conn:
            return [
                (r["invoice_id"], str(r["amount"]), str(r["open_amount"]), r["days_past_due"], r["status"])
                for r in queries.open_items(conn, "C3", as_of, known_at)
            ]

    assert items(date(2024, 4, 22)) == []
    assert items(date(2024, 4, 26)) == [("X1", "1000.0000", "700.0000", 26, "partially_paid")]
    assert items(date(2024, 4, 22), t.t3) == [("X2", "500.0000", "500.0000", -9, "open")]
    assert items(date(2024, 4, 5)) == [("X1", "1000.0000", "700.0000", 5, "partially_paid"),
                                       ("X2", "500.0000", "500.0000", -26, "open")]


def test_balances_as_known_at(book: tuple[LedgerBook, Instants]) -> None:
    ledger, t = book
    with ledger.engine.connect() as conn:
        (known_t1,) = queries.balances(conn, "C3", date(2024, 4, 30), t.t1)
        (now,) = queries.balances(conn, "C3", date(2024, 4, 30))
    assert (known_t1["open_amount"], known_t1["overdue_amount"]) == (Decimal("1000"), Decimal("1000"))
    assert (now["open_amount"], now["overdue_amount"], now["unapplied_cash"]) == (
        Decimal("700"), Decimal("700"), Decimal("0"))


# --------------------------------------------------------------------------- metrics


@pytest.fixture
def metrics_book(database_url: str) -> Iterator[tuple[LedgerBook, datetime]]:
    """As of 2024-03-31: A (before the period) partly paid, B not yet due, C overdue, D later."""
    book = LedgerBook(database_url)
    before_payment = book.post(
        invoice("M1", "A", "1000.00", "2024-02-01", "2024-03-02"),
        invoice("M1", "B", "600.00", "2024-03-10", "2024-04-09"),
        invoice("M1", "C", "400.00", "2024-03-20", "2024-03-25"),
        invoice("M1", "D", "900.00", "2024-04-05", "2024-05-05"),
        invoice("M1", "G", "90.00", "2024-01-01", "2024-01-31", currency="GBP"),
    )
    book.post(payment("M1", "PA", "700.00", "2024-03-15", to="A"))
    yield book, before_payment
    book.close()


def figures(book: LedgerBook, days: int, currency: str, known_at: datetime | None = None) -> dict[str, str]:
    with book.engine.connect() as conn:
        (m,) = receivables_metrics(conn, date(2024, 3, 31), days, currency=currency, known_at=known_at)
    return {k: str(v) for k, v in vars(m).items() if k not in ("currency", "period_start")}


def test_metrics_by_the_contracts_formulas(metrics_book: tuple[LedgerBook, datetime]) -> None:
    book, before_payment = metrics_book
    # 30 days: AR at start (03-01) 1000; sales B+C 1000; AR at end 300+600+400 = 1300, 600 not due
    assert figures(book, 30, "EUR") == {
        "ar_balance": "1300.0000", "current_ar": "600.0000", "ar_at_start": "1000.0000",
        "credit_sales": "1000.0000", "unapplied_cash": "0.0000",
        "dso": "39.00",                       # 1300 / 1000 * 30
        "best_possible_dso": "18.00",         # 600 / 1000 * 30
        "average_days_delinquent": "21.00",   # 39 - 18
        "cei": "50.00",                       # (1000 + 1000 - 1300) / (1000 + 1000 - 600) * 100
    }
    # 90 days: nothing at start; sales A+B+C 2000
    got = figures(book, 90, "EUR")
    assert (got["dso"], got["best_possible_dso"], got["average_days_delinquent"], got["cei"]) == (
        "58.50", "27.00", "31.50", "50.00")
    # as known before the payment: AR 2000, nothing collected
    got = figures(book, 30, "EUR", before_payment)
    assert (got["ar_balance"], got["dso"], got["cei"]) == ("2000.0000", "60.00", "0.00")


def test_metrics_without_sales_or_without_anything_are_null(
    metrics_book: tuple[LedgerBook, datetime],
) -> None:
    book, _ = metrics_book
    gbp = figures(book, 30, "GBP")
    assert (gbp["credit_sales"], gbp["dso"], gbp["best_possible_dso"], gbp["average_days_delinquent"]) == (
        "0.0000", "None", "None", "None")
    assert gbp["cei"] == "0.00"  # (90 + 0 - 90) / (90 + 0 - 0)
    usd = figures(book, 30, "USD")
    assert (usd["ar_balance"], usd["dso"], usd["cei"]) == ("0", "None", "None")
    with book.engine.connect() as conn:
        assert [m.currency for m in receivables_metrics(conn, date(2024, 3, 31), 30)] == ["EUR", "GBP"]


def test_metrics_round_half_up_and_add_is_the_difference_of_the_published_dsos() -> None:
    m = _metrics("EUR", date(2024, 1, 1), 30, Decimal("100"), Decimal("50"), Decimal("0"),
                 Decimal("300"), Decimal("0"))
    # 100/300*30 = 10.000..., 50/300*30 = 5; CEI = (0+300-100)/(0+300-50)*100 = 80
    assert (m.dso, m.best_possible_dso, m.average_days_delinquent, m.cei) == (
        Decimal("10.00"), Decimal("5.00"), Decimal("5.00"), Decimal("80.00"))
    m = _metrics("EUR", date(2024, 1, 1), 7, Decimal("1"), Decimal("0.5"), Decimal("0"),
                 Decimal("3"), Decimal("0"))
    # 1/3*7 = 2.333 -> 2.33; 0.5/3*7 = 1.1666 -> 1.17; ADD 2.33 - 1.17 = 1.16
    assert (m.dso, m.best_possible_dso, m.average_days_delinquent) == (
        Decimal("2.33"), Decimal("1.17"), Decimal("1.16"))
