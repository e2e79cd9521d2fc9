"""bench.book's payment habits (issue 20): with ``habits=True`` customers pay by habits that differ
(some habitually late, most on time) and drift (turning bad: later and later), so a payment
model has something to learn; the rest of the book keeps its shape."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date

import orjson

from bench.book import generate_book


def days_late(habits: bool) -> dict[str, list[tuple[date, int]]]:
    """Per customer: (due date, days late) of each invoice paid by one allocation in full."""
    book = generate_book(400, 30_000, seed=5, habits=habits)
    due: dict[str, tuple[date, str]] = {}
    found: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for message in book.messages:
        if message.kind == "invoice.issued":
            data = orjson.loads(message.value)["data"]
            due[data["invoice_id"]] = (date.fromisoformat(data["due_date"]), data["amount"])
        elif message.kind == "payment.received":
            data = orjson.loads(message.value)["data"]
            allocations = data.get("allocations") or []
            if len(allocations) == 1 and allocations[0]["invoice_id"] in due:
                day, amount = due[allocations[0]["invoice_id"]]
                if allocations[0]["amount"] == amount == data["amount"]:
                    late = (date.fromisoformat(data["received_date"]) - day).days
                    found[data["customer_id"]].append((day, max(0, late)))
    return found


def persistence(paid_by_customer: dict[str, list[tuple[date, int]]]) -> float:
    """How far a customer's lateness on half its invoices tells its lateness on the other half:
    the correlation, over customers, of the mean days late of its odd and its even invoices."""
    pairs = [(statistics.fmean(d for _, d in paid[0::2]), statistics.fmean(d for _, d in paid[1::2]))
             for paid in paid_by_customer.values() if len(paid) >= 6]
    assert len(pairs) > 100
    return statistics.correlation([a for a, _ in pairs], [b for _, b in pairs])


def test_habits_make_customers_differ_and_drift() -> None:
    paid = days_late(True)
    assert persistence(paid) > 0.6
    # some customers pay what falls due late in the year far later than what fell due early
    turned = [c for c, found in paid.items()
              if len([d for day, d in found if day.month <= 4]) >= 2
              and statistics.fmean(d for day, d in found if day.month <= 4) <= 2
              and [d for day, d in found if day.month >= 11]
              and statistics.fmean(d for day, d in found if day.month >= 11) >= 20]
    assert len(turned) >= 3


def test_without_habits_the_past_tells_little() -> None:
    assert persistence(days_late(False)) < 0.3
