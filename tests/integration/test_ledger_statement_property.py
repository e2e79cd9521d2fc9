"""Property (issue 17): for random books, a statement of account closes, on any date, on what
the balance endpoint says the customer owes as of that date: its open amount less its
unapplied cash, per currency. Its lines add up (opening + Σ debit - Σ credit = closing, the
running balance line by line), and it opens on the balance of the day before its period.

The books are the domain property test's generated streams (``streams()``: invoices with and
without cash-discount terms, payments allocated, partial and on account, credit notes,
disputes, adjustments, cancellations, write-offs, reversals and redeliveries, for one customer
in EUR and USD, refusals included), each fed under a customer of its own through the real
application and projector, and read over HTTP as a client reads them, as everything is
known now and as it was known at an instant half-way through the feed. On SQLite and
PostgreSQL: the examples of a backend share one database, kept apart by their customers.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.integration.ledger_books import LedgerBook
from tests.integration.test_ledger_replay import feed, rekey
from tests.unit.test_ledger_properties import BASE, streams

_customers = itertools.count()
# (the period's last day as days from the streams' first day, the period's length in days):
# the streams' business dates run from a few days before BASE to about BASE + 45
PERIODS = st.tuples(st.integers(-5, 50), st.integers(0, 40))


@pytest.fixture(scope="module")
async def ledger(module_database_url: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[tuple[LedgerBook, httpx.AsyncClient]]:
    book = LedgerBook(module_database_url)
    try:
        async with book.api(tmp_path_factory.mktemp("statement-property")) as client:
            yield book, client
    finally:
        book.close()


# no shrinking: a failing book takes minutes to shrink (the unshrunk one is reported, with its periods)
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=streams(), batch=st.integers(1, 13), periods=st.lists(PERIODS, min_size=1, max_size=3))
async def test_a_statement_closes_on_the_balance_less_unapplied_cash_on_any_date(
    ledger: tuple[LedgerBook, httpx.AsyncClient], stream: list[dict[str, Any]], batch: int,
    periods: list[tuple[int, int]],
) -> None:
    book, client = ledger
    customer = f"ST{next(_customers)}"  # a new customer per example: no example sees another's book
    feed(book, rekey(stream, customer), batch)
    book.project()
    events = book.app.history(customer)
    if not events:  # every message refused: no account, no customer, nothing to state
        assert (await client.get(f"/customers/{customer}/statement")).status_code == 404
        return
    # half-way through the account's events: a past that both reads must see alike
    halfway = events[(len(events) - 1) // 2].timestamp
    spans = [(BASE + timedelta(days=end - length), BASE + timedelta(days=end)) for end, length in periods]
    spans.append((BASE - timedelta(days=10), BASE + timedelta(days=400)))  # the whole book
    for known_at in (None, halfway):
        for first, last in spans:
            note(f"{customer}: {first} to {last}, known at {known_at}")
            await check_statement(client, customer, first, last, known_at)


async def check_statement(client: httpx.AsyncClient, customer: str, first: date, last: date,
                          known_at: datetime | None) -> None:
    known = {"known_at": known_at.isoformat()} if known_at else {}
    answer = await client.get(f"/customers/{customer}/statement",
                              params={"from": first.isoformat(), "to": last.isoformat(), **known})
    assert answer.status_code == 200, answer.text
    statements = {s["currency"]: s for s in answer.json()["currencies"]}
    closing = await owed(client, customer, last, known)
    opening = await owed(client, customer, first - timedelta(days=1), known)
    for currency in statements.keys() | closing.keys():
        found = statements.get(currency)
        if found is None:  # no movement by then: nothing is owed either way
            assert closing[currency] == (Decimal(0), Decimal(0)), currency
            continue
        open_amount, unapplied_cash = closing.get(currency, (Decimal(0), Decimal(0)))
        assert Decimal(found["closing_balance"]) == open_amount - unapplied_cash, currency
        assert Decimal(found["unapplied_cash"]) == unapplied_cash, currency
        open_before, unapplied_before = opening.get(currency, (Decimal(0), Decimal(0)))
        assert Decimal(found["opening_balance"]) == open_before - unapplied_before, currency
        running = Decimal(found["opening_balance"])
        for line in found["lines"]:
            assert first <= date.fromisoformat(line["date"]) <= last, line
            debit, credit = Decimal(line["debit"]), Decimal(line["credit"])
            assert debit >= 0 and credit >= 0 and (debit == 0) != (credit == 0), line  # one of them
            running += debit - credit
            assert Decimal(line["balance"]) == running, line
        assert [line["date"] for line in found["lines"]] == sorted(line["date"] for line in found["lines"])
        assert running == Decimal(found["closing_balance"]), currency


async def owed(client: httpx.AsyncClient, customer: str, as_of: date, known: dict[str, str]
               ) -> dict[str, tuple[Decimal, Decimal]]:
    """The balance endpoint's open amount and unapplied cash per currency as of a day."""
    answer = await client.get(f"/customers/{customer}/balance", params={"as_of": as_of.isoformat(), **known})
    assert answer.status_code == 200, answer.text
    return {b["currency"]: (Decimal(b["open_amount"]), Decimal(b["unapplied_cash"]))
            for b in answer.json()["balances"]}
