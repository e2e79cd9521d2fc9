"""Advance receipts over HTTP, on SQLite and PostgreSQL, against a quarter worked out by hand
(issue 18): ``GET /prepayments`` as of dates and as known at instants, ``GET /aging/unapplied``
and the refund on the statement.

Customer H, EUR:
- H-OLD 400.00 (5 Jan, due 4 Feb); P3 500.00 on 15 Jan, untagged: H-OLD paid, 100.00 left.
- RQ1 asks 500.00 for order O1 (10 Jan, due 20 Jan): never paid.
- RQ2 asks 300.00 for order O2 (1 Feb, due 10 Feb): P1 200.00 (5 Feb) and P2 100.00 (8 Feb)
  are paid for it; RF1 refunds 30.00 of P2 (12 Feb); the order's invoice H-ORD2 250.00
  (20 Feb) takes P1's 200.00 and 50.00 of P2, whose last 20.00 is ordinary cash from then.
- RQ3 asks 100.00 (1 Mar, due 5 Mar) and is withdrawn on 10 Mar.

On 31 Mar: RQ1 is 81 days old (21 + 29 + 31) and 71 days past due, still ``requested``; RQ2
received 300.00, applied 250.00, refunded 30.00, holds 20.00: ``applied``, 59 days old;
RQ3 ``cancelled``. Unapplied: P3's 100.00 received 76 days before, P2's 20.00 52 days before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ledger_books import LedgerBook, event, invoice, payment


def request(request_id: str, amount: str, requested: str, due: str, order: str | None = None
            ) -> dict[str, Any]:
    return event("prepayment.requested", f"req-{request_id}", customer_id="H", request_id=request_id,
                 currency="EUR", amount=amount, requested_date=requested, due_date=due,
                 **({"order_id": order} if order else {}))


def tagged(payment_id: str, amount: str, received: str, request_id: str) -> dict[str, Any]:
    message = payment("H", payment_id, amount, received)
    message["data"]["prepayment_request_id"] = request_id
    return message


@dataclass
class Quarter:
    client: httpx.AsyncClient
    before_p2: datetime  # recorded after P1, before P2


@pytest.fixture
async def quarter(database_url: str, tmp_path: Path) -> AsyncIterator[Quarter]:
    book = LedgerBook(database_url)
    book.post(invoice("H", "H-OLD", "400.00", "2024-01-05", "2024-02-04"), topic="ar.invoices")
    book.post(payment("H", "P3", "500.00", "2024-01-15"), topic="ar.payments")
    book.post(request("RQ1", "500.00", "2024-01-10", "2024-01-20", "O1"),
              request("RQ2", "300.00", "2024-02-01", "2024-02-10", "O2"), topic="ar.invoices")
    before_p2 = book.post(tagged("P1", "200.00", "2024-02-05", "RQ2"), topic="ar.payments")
    book.post(tagged("P2", "100.00", "2024-02-08", "RQ2"), topic="ar.payments")
    book.post(event("payment.refunded", "ref-RF1", customer_id="H", refund_id="RF1", currency="EUR",
                    amount="30.00", refund_date="2024-02-12", payment_id="P2"), topic="ar.payments")
    book.post(invoice("H", "H-ORD2", "250.00", "2024-02-20", "2024-03-21", order_id="O2"),
              topic="ar.invoices")
    book.post(request("RQ3", "100.00", "2024-03-01", "2024-03-05"),
              event("prepayment.cancelled", "cancel-RQ3", customer_id="H", request_id="RQ3",
                    effective_date="2024-03-10", reason="order withdrawn"), topic="ar.invoices")
    async with book.api(tmp_path) as client:
        yield Quarter(client, before_p2)
    book.close()


def figures(body: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {p["request_id"]: (p["status"], p["requested"], p["received"], p["applied"], p["refunded"],
                              p["held"], p["age_days"], p["days_past_due"])
            for p in body["prepayments"]}


async def prepayments(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/prepayments", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_requests_at_the_end_of_the_quarter(quarter: Quarter) -> None:
    body = await prepayments(quarter.client, as_of="2024-03-31")
    assert figures(body) == {
        "RQ1": ("requested", "500.00", "0.00", "0.00", "0.00", "0.00", 81, 71),
        "RQ2": ("applied", "300.00", "300.00", "250.00", "30.00", "20.00", 59, 0),
        "RQ3": ("cancelled", "100.00", "0.00", "0.00", "0.00", "0.00", 30, 0),
    }
    rq1 = body["prepayments"][0]
    assert (rq1["customer_id"], rq1["order_id"], rq1["due_date"], rq1["cancelled_date"]) == (
        "H", "O1", "2024-01-20", None)
    assert body["prepayments"][2]["cancelled_date"] == "2024-03-10"


async def test_a_request_never_paid_is_found_by_its_age_and_its_status(quarter: Quarter) -> None:
    old = await prepayments(quarter.client, as_of="2024-03-31", older_than_days=60)
    assert list(figures(old)) == ["RQ1"]  # RQ2 is 59 days old
    waiting = await prepayments(quarter.client, as_of="2024-03-31", status="requested")
    assert list(figures(waiting)) == ["RQ1"]
    assert list(figures(await prepayments(quarter.client, as_of="2024-03-31", customer_id="X"))) == []


async def test_as_of_a_date_and_as_known_at_an_instant(quarter: Quarter) -> None:
    early = figures(await prepayments(quarter.client, as_of="2024-02-06"))
    # P1 came, P2 not yet; RQ3 not yet asked
    assert early == {"RQ1": ("requested", "500.00", "0.00", "0.00", "0.00", "0.00", 27, 17),
                     "RQ2": ("partially_received", "300.00", "200.00", "0.00", "0.00", "200.00", 5, 0)}
    before_refund = figures(await prepayments(quarter.client, as_of="2024-02-10"))["RQ2"]
    assert before_refund == ("received", "300.00", "300.00", "0.00", "0.00", "300.00", 9, 0)
    # as the ledger knew it before P2 was recorded, although P2 is dated earlier
    known = figures(await prepayments(quarter.client, as_of="2024-03-31",
                                      known_at=quarter.before_p2.isoformat()))
    assert known == {"RQ1": ("requested", "500.00", "0.00", "0.00", "0.00", "0.00", 81, 71),
                     "RQ2": ("partially_received", "300.00", "200.00", "0.00", "0.00", "200.00", 59, 50)}


async def test_the_unapplied_cash_by_days_since_it_was_received(quarter: Quarter) -> None:
    response = await quarter.client.get("/aging/unapplied", params={"as_of": "2024-03-31"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["buckets"] == ["0-30", "31-60", "61-90", "91-180", "180+"]
    (row,) = body["rows"]
    assert row == {"customer_id": "H", "currency": "EUR", "0-30": "0.00", "31-60": "20.00",
                   "61-90": "100.00", "91-180": "0.00", "180+": "0.00", "total": "120.00",
                   "from_prepayments": "20.00", "credits": 2, "oldest_received": "2024-01-15"}
    custom = (await quarter.client.get("/aging/unapplied", params={"as_of": "2024-03-31", "buckets": "60"}))
    (row,) = custom.json()["rows"]
    assert (row["0-60"], row["60+"], row["total"]) == ("20.00", "100.00", "120.00")
    # on 10 Feb: P3's 100.00 (26 days), P1's 200.00 and P2's 100.00, all held for RQ2
    (row,) = (await quarter.client.get("/aging/unapplied", params={"as_of": "2024-02-10"})).json()["rows"]
    assert (row["0-30"], row["total"], row["from_prepayments"], row["credits"]) == (
        "400.00", "400.00", "300.00", 3)
    refused = await quarter.client.get("/aging/unapplied", params={"buckets": "60,30"})
    assert refused.status_code == 422
    assert "buckets" in refused.text


async def test_the_refund_is_a_line_of_the_statement(quarter: Quarter) -> None:
    response = await quarter.client.get("/customers/H/statement", params={"from": "2024-02-01",
                                                                          "to": "2024-02-29"})
    (eur,) = response.json()["currencies"]
    lines = [(x["date"], x["type"], x["reference"], x["debit"], x["credit"]) for x in eur["lines"]]
    # the opening balance: H-OLD 400.00 less P3 500.00
    assert eur["opening_balance"] == "-100.00"
    assert lines == [
        ("2024-02-05", "payment", "P1", "0.00", "200.00"),
        ("2024-02-08", "payment", "P2", "0.00", "100.00"),
        ("2024-02-12", "refund", "RF1", "30.00", "0.00"),
        ("2024-02-20", "invoice", "H-ORD2", "250.00", "0.00"),
    ]
    assert (eur["closing_balance"], eur["unapplied_cash"]) == ("-120.00", "120.00")
