"""The ledger's statement of account over HTTP, on SQLite and PostgreSQL, against a month
worked out by hand: an opening balance, invoices, a payment with its early-payment discount,
a partial payment, a credit note, a write-off and a payment without allocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.integration.ledger_books import LedgerBook, march_statement_book


@pytest.fixture
async def statement_book(database_url: str, tmp_path: Path
                         ) -> AsyncIterator[tuple[httpx.AsyncClient, datetime]]:
    book = LedgerBook(database_url)
    recorded = [book.post(*messages, topic=topic) for topic, messages in march_statement_book()]
    before_p3 = recorded[3]  # (I9's)
    async with book.api(tmp_path) as client:
        yield client, before_p3
    book.close()


async def test_a_month_worked_out_by_hand(statement_book: tuple[httpx.AsyncClient, datetime]) -> None:
    client, _ = statement_book
    response = await client.get("/customers/S/statement", params={"from": "2024-03-01", "to": "2024-03-31"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customer_id"], body["from"], body["to"]) == ("S", "2024-03-01", "2024-03-31")
    (eur,) = body["currencies"]
    lines = [(x["date"], x["type"], x["reference"], x["debit"], x["credit"], x["balance"])
             for x in eur["lines"]]
    assert eur["opening_balance"] == "1000.00"  # I1, issued in February
    assert lines == [
        ("2024-03-01", "invoice", "I3", "1000.00", "0.00", "2000.00"),
        ("2024-03-05", "invoice", "I2", "500.00", "0.00", "2500.00"),
        ("2024-03-08", "payment", "P2", "0.00", "980.00", "1520.00"),
        ("2024-03-08", "discount", "I3", "0.00", "20.00", "1500.00"),  # 2% of I3, paid within 10 days
        ("2024-03-10", "payment", "P1", "0.00", "300.00", "1200.00"),
        ("2024-03-15", "credit_note", "CN1", "0.00", "100.00", "1100.00"),
        ("2024-03-20", "write_off", "I2", "0.00", "50.00", "1050.00"),
        # no allocation: the ledger applies it to the oldest open invoice, I1 (which moves no
        # balance: no line of its own)
        ("2024-03-25", "payment", "P3", "0.00", "200.00", "850.00"),
    ]
    # I1 500.00 + I2 350.00 open, nothing unapplied; I9 (April) is after the period
    assert (eur["closing_balance"], eur["unapplied_cash"]) == ("850.00", "0.00")
    debit = sum(Decimal(x["debit"]) for x in eur["lines"])
    credit = sum(Decimal(x["credit"]) for x in eur["lines"])
    assert Decimal(eur["opening_balance"]) + debit - credit == Decimal(eur["closing_balance"])
    # and the balance endpoint agrees: open amount less unapplied cash on the last day
    (balance,) = (await client.get("/customers/S/balance", params={"as_of": "2024-03-31"})).json()["balances"]
    assert Decimal(balance["open_amount"]) - Decimal(balance["unapplied_cash"]) == Decimal("850.00")


async def test_known_at_the_filters_and_the_errors(
    statement_book: tuple[httpx.AsyncClient, datetime]
) -> None:
    client, before_p3 = statement_book
    known = await client.get("/customers/S/statement", params={
        "from": "2024-03-01", "to": "2024-03-31", "known_at": before_p3.isoformat()})
    (eur,) = known.json()["currencies"]
    assert [x["reference"] for x in eur["lines"]][-1] == "I2"  # P3 was not known yet
    assert (eur["closing_balance"], eur["unapplied_cash"]) == ("1050.00", "0.00")
    april = (await client.get("/customers/S/statement", params={"from": "2024-04-01", "to": "2024-04-30",
                                                                 "currency": "EUR"})).json()
    assert april["currencies"][0]["opening_balance"] == "850.00"
    assert [x["reference"] for x in april["currencies"][0]["lines"]] == ["I9"]
    usd = (await client.get("/customers/S/statement", params={"from": "2024-03-01", "to": "2024-03-31",
                                                               "currency": "USD"})).json()
    assert usd["currencies"] == []
    backwards = await client.get("/customers/S/statement", params={"from": "2024-03-31", "to": "2024-03-01"})
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "query.to"
    assert (await client.get("/customers/NOBODY/statement")).status_code == 404
    # a customer who paid ahead, with nothing to pay it on: it is owed the money
    (ahead,) = (await client.get("/customers/U/statement", params={"from": "2024-03-01",
                                                                    "to": "2024-03-31"})).json()["currencies"]
    assert [(x["type"], x["reference"], x["credit"]) for x in ahead["lines"]] == [("payment", "PU", "75.00")]
    assert (ahead["opening_balance"], ahead["closing_balance"], ahead["unapplied_cash"]) == (
        "0.00", "-75.00", "75.00")
