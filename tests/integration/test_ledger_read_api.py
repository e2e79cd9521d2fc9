"""The read endpoints over HTTP (real routers, real database, no Kafka): shapes, scopes,
problem+json errors, and the audit trail with the inbound message behind every event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ledger_books import WRITER_ONLY, LedgerBook, event, invoice, payment


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    book = LedgerBook(database_url)
    book.post(invoice("C1", "I1", "1000.00", "2024-03-01", "2024-03-31", region="north"),
              invoice("C1", "I2", "50.00", "2024-03-01", "2024-03-31", currency="USD"),
              topic="ar.invoices")
    book.post(payment("C1", "P1", "400.00", "2024-04-10", to="I1"), topic="ar.payments")
    book.post(event("dispute.opened", "d-1", customer_id="C1", dispute_id="D1", invoice_id="I1",
                    amount="100.00", opened_date="2024-04-12", reason="damaged"), topic="ar.disputes")
    book.post(invoice("C2", "I3", "70.00", "2024-04-01", "2024-05-01"), topic="ar.invoices")
    async with book.api(tmp_path) as client:
        yield client
    book.close()


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug)
    return body


async def test_aging_over_http(client: httpx.AsyncClient) -> None:
    response = await client.get("/aging", params={"as_of": "2024-04-30", "group_by": "customer", "limit": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["buckets"] == ["current", "1-30", "31-60", "61-90", "91-120", "120+"]
    assert body["rows"] == [{
        "group": "C1", "customer_id": "C1", "currency": "EUR", "current": "0.00", "1-30": "600.00",
        "31-60": "0.00", "61-90": "0.00", "91-120": "0.00", "120+": "0.00", "disputed": "100.00",
        "total": "600.00", "unapplied_cash": "0.00",
    }]
    rest = (await client.get("/aging", params={"as_of": "2024-04-30", "group_by": "customer",
                                               "cursor": body["next_cursor"]})).json()
    assert [(r["group"], r["currency"], r["total"]) for r in rest["rows"]] == [
        ("C1", "USD", "50.00"), ("C2", "EUR", "70.00")]
    assert rest["next_cursor"] is None
    by_region = (await client.get("/aging", params={"as_of": "2024-04-30", "group_by": "region",
                                                    "buckets": "10,20", "currency": "EUR"})).json()
    assert by_region["buckets"] == ["current", "1-10", "11-20", "20+"]
    assert [(r["group"], r["total"], r["20+"]) for r in by_region["rows"]] == [
        (None, "70.00", "0.00"), ("north", "600.00", "600.00")]
    assert "unapplied_cash" not in by_region["rows"][0]


@pytest.mark.parametrize(("params", "field"), [
    ({"buckets": "60,30"}, "query.buckets"),
    ({"group_by": "a b"}, "query.group_by"),
    ({"cursor": "xyz"}, "query.cursor"),
    ({"limit": "0"}, "query.limit"),
    ({"currency": "euro"}, "query.currency"),
    ({"as_of": "2024-13-01"}, "query.as_of"),
    ({"known_at": "yesterday"}, "query.known_at"),
])
async def test_aging_validation_errors_name_the_field(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    body = problem(await client.get("/aging", params=params), 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == [field]


async def test_balance_open_items_and_invoice_with_known_at(client: httpx.AsyncClient) -> None:
    audit = (await client.get("/audit/customers/C1")).json()
    before_payment = [e["recorded_at"] for e in audit["events"] if e["type"] == "InvoiceIssued"][-1]
    items = (await client.get("/customers/C1/open-items", params={"as_of": "2024-04-30"})).json()
    assert [(i["invoice_id"], i["open_amount"], i["disputed_amount"], i["days_past_due"]) for i in
            items["open_items"]] == [("I1", "600.00", "100.00", 30), ("I2", "50.00", "0.00", 30)]
    known = (await client.get("/customers/C1/open-items",
                              params={"as_of": "2024-04-30", "known_at": before_payment})).json()
    assert [i["open_amount"] for i in known["open_items"]] == ["1000.00", "50.00"]
    inv = (await client.get("/invoices/I1", params={"known_at": before_payment})).json()
    assert (inv["open_amount"], inv["status"], inv["disputed_amount"]) == ("1000.00", "open", "0.00")
    now = (await client.get("/invoices/I1")).json()
    assert (now["open_amount"], now["status"], now["disputed_amount"]) == (
        "600.00", "partially_paid", "100.00")
    balance = (await client.get("/customers/C1/balance",
                                params={"as_of": "2024-04-30", "known_at": before_payment})).json()
    assert [b["open_amount"] for b in balance["balances"]] == ["1000.00", "50.00"]
    problem(await client.get("/customers/NOPE/open-items"), 404, "not-found")
    problem(await client.get("/invoices/I1", params={"as_of": "2024-01-01"}), 404, "not-found")


async def test_known_at_with_an_offset_is_the_same_instant(client: httpx.AsyncClient) -> None:
    audit = (await client.get("/audit/customers/C1")).json()
    from datetime import datetime, timedelta, timezone

    first = datetime.fromisoformat(audit["events"][1]["recorded_at"])
    in_paris = first.astimezone(timezone(timedelta(hours=2))).isoformat()
    inv = (await client.get("/invoices/I1", params={"known_at": in_paris})).json()
    assert inv["open_amount"] == "1000.00"


async def test_receivables_metrics_over_http(client: httpx.AsyncClient) -> None:
    eur = (await client.get("/metrics/receivables",
                            params={"as_of": "2024-04-30", "days": 60, "currency": "EUR"})).json()
    # sales in (03-01, 04-30]: I3 70 (I1 was issued on 03-01, the start day); AR at start 1000
    assert (eur["ar_balance"], eur["credit_sales"], eur["currencies"][0]["ar_at_start"]) == (
        "670.00", "70.00", "1000.00")
    assert eur["dso"] == "574.29"  # 670 / 70 * 60 = 574.2857
    assert eur["best_possible_dso"] == "60.00"  # I3 is not yet due: 70 / 70 * 60
    assert eur["average_days_delinquent"] == "514.29"
    assert eur["cei"] == "40.00"  # (1000 + 70 - 670) / (1000 + 70 - 70) * 100
    both = (await client.get("/metrics/receivables", params={"as_of": "2024-04-30", "days": 60})).json()
    assert [c["currency"] for c in both["currencies"]] == ["EUR", "USD"]
    assert both["dso"] is None  # two currencies: see the list
    problem(await client.get("/metrics/receivables", params={"days": 0}), 422, "validation-error")


async def test_the_audit_trail_shows_the_inbound_message_behind_each_event(client: httpx.AsyncClient) -> None:
    customer = (await client.get("/audit/customers/C1")).json()
    assert [e["type"] for e in customer["events"]] == [
        "Opened", "InvoiceIssued", "InvoiceIssued", "CreditReceived", "DisputeOpened"]
    assert [e["version"] for e in customer["events"]] == [1, 2, 3, 4, 5]
    recorded = [e["recorded_at"] for e in customer["events"]]
    assert recorded == sorted(recorded)
    issued = customer["events"][1]
    assert issued["effective_date"] == "2024-03-01"
    assert issued["data"]["invoice"]["invoice_id"] == "I1"
    assert issued["message"] == {"source": "erp/books", "id": "inv-I1", "type": "invoice.issued",
                                 "topic": "ar.invoices", "partition": 3, "offset": 1}
    assert customer["events"][3]["message"]["topic"] == "ar.payments"
    assert customer["events"][3]["effective_date"] == "2024-04-10"

    invoice_trail = (await client.get("/audit/invoices/I1")).json()
    assert invoice_trail["customer_id"] == "C1"
    assert [(e["type"], e["message"]["id"]) for e in invoice_trail["events"]] == [
        ("InvoiceIssued", "inv-I1"), ("CreditReceived", "pay-P1"), ("DisputeOpened", "d-1")]
    usd = (await client.get("/audit/invoices/I2")).json()
    assert [e["type"] for e in usd["events"]] == ["InvoiceIssued"]

    page = (await client.get("/audit/customers/C1", params={"limit": 2})).json()
    assert [e["version"] for e in page["events"]] == [1, 2] and page["next_cursor"] == "2"
    page = (await client.get("/audit/customers/C1", params={"limit": 2, "cursor": 4})).json()
    assert [e["version"] for e in page["events"]] == [5]

    problem(await client.get("/audit/invoices/NOPE"), 404, "not-found")
    problem(await client.get("/audit/customers/NOPE"), 404, "not-found")


@pytest.mark.parametrize("path", ["/aging", "/metrics/receivables", "/audit/customers/C1",
                                  "/audit/invoices/I1", "/customers/C1/open-items"])
async def test_reads_need_the_ledger_read_scope(client: httpx.AsyncClient, path: str) -> None:
    problem(await client.get(path, headers={"Authorization": f"Bearer {WRITER_ONLY}"}), 403,
            "insufficient-scope")
    problem(await client.get(path, headers={"Authorization": ""}), 401, "unauthorized")
