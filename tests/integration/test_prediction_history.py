"""The predictions' invoice records built from the ledger's read models (issue 20), on SQLite
and PostgreSQL: each change with its effective date and recorded instant, so that an invoice
known at an instant before its payment was recorded is still open."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from services.ledger.predictions.features import known
from services.ledger.predictions.history import customer_records
from tests.integration.ledger_books import LedgerBook, event, invoice, payment


def test_records_carry_both_stamps_of_every_change(database_url: str) -> None:
    book = LedgerBook(database_url)
    try:
        discounted = invoice("PR", "PR-1", "100.00", "2025-01-01", "2025-01-31")
        discounted["data"]["terms"] = {"discount_percent": "2", "discount_days": 10}
        none_off = invoice("PR", "PR-3", "70.00", "2025-01-06", "2025-02-05")
        none_off["data"]["terms"] = {"discount_percent": "0", "discount_days": 10}  # terms, yet no discount
        issued = book.post(discounted, invoice("PR", "PR-2", "50.00", "2025-01-05", "2025-02-04"), none_off,
                           topic="ar.invoices")
        book.post(event("dispute.opened", "d-1", customer_id="PR", dispute_id="D1", invoice_id="PR-2",
                        amount="20.00", opened_date="2025-01-20", reason="damaged"), topic="ar.disputes")
        paid = book.post(payment("PR", "P1", "100.00", "2025-02-10", to="PR-1"), topic="ar.payments")
        with book.engine.connect() as conn:
            records = customer_records(conn, ["PR", "NOBODY"])
    finally:
        book.close()
    (first, second, third) = records["PR"]
    assert (first.invoice_id, first.amount, first.has_cash_discount) == ("PR-1", Decimal("100.00"), True)
    assert (second.invoice_id, second.has_cash_discount) == ("PR-2", False)
    assert (third.invoice_id, third.has_cash_discount, third.due_date) == ("PR-3", False, date(2025, 2, 5))
    assert [(c.kind, c.effective.isoformat(), c.open_delta) for c in first.changes] == [
        ("settlement", "2025-02-10", Decimal("-100.00"))]
    assert [(c.kind, c.disputed_delta) for c in second.changes] == [("dispute", Decimal("20.00"))]
    day = date(2025, 2, 15)
    before, after = known(first, day, issued), known(first, day, paid)
    assert before is not None and after is not None
    assert (before.open_amount, before.settled_on) == (Decimal("100.00"), None)
    assert (after.open_amount, after.days_late) == (Decimal("0.00"), 10)
    assert known(second, day, paid).disputed == Decimal("20.00")  # type: ignore[union-attr]
    assert "NOBODY" not in records


def test_many_customers_are_read_a_chunk_at_a_time(database_url: str, monkeypatch: Any) -> None:
    """However many customers are asked for (training asks for all of them, more than a query
    may take parameters), the records are the same as read one customer at a time."""
    from services.ledger.predictions import history

    book = LedgerBook(database_url)
    try:
        customers = [f"C{n}" for n in range(7)]
        book.post(*(invoice(c, f"{c}-1", "10.00", "2025-01-01", "2025-01-31") for c in customers),
                  topic="ar.invoices")
        book.post(*(payment(c, f"{c}-P", "10.00", "2025-02-02", to=f"{c}-1") for c in customers[::2]),
                  topic="ar.payments")
        with book.engine.connect() as conn:
            one_by_one = {c: customer_records(conn, [c])[c] for c in customers}
            monkeypatch.setattr(history, "CHUNK", 3)
            chunked = customer_records(conn, [*customers, "NOBODY"])
    finally:
        book.close()
    assert chunked == one_by_one
