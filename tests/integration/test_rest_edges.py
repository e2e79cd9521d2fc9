"""The REST edge of the three services, on a seeded stack: dates ahead of the clock, numbers
out of range and an unreachable store are answered as problems (422, 503), never as a 500
or a state nothing can undo; and the OpenAPI documents say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from shared.business_dates import today_utc
from shared.db import BIGINT_MAX
from shared.hot_reads import HotReads
from tests.integration.stack_harness import ServiceStack, seeded_stack

# PostgreSQL's port on no host that listens: connecting fails at once
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/receivables"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    with seeded_stack(tmp_path_factory.mktemp("edges")) as stack:
        yield stack


def call(stack: ServiceStack, service: str, method: str, path: str, body: Any = None,
         **params: Any) -> httpx.Response:
    return httpx.request(method, stack.urls[service] + path, json=body, params=params or None,
                         headers=stack.headers(), timeout=30)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    return document


def fields(document: dict[str, Any]) -> list[str]:
    return [error["field"] for error in document.get("errors", [])]


@pytest.mark.parametrize(("service", "path"), [("dunning", "/runs"), ("credit", "/reviews")])
def test_a_run_or_review_ahead_of_the_clock_is_refused_and_changes_nothing(
    stack: ServiceStack, service: str, path: str
) -> None:
    listing = "/reviews" if service == "credit" else "/notices"
    before = call(stack, service, "GET", listing).json()
    for ahead in ("9999-12-31", "2999-12-31", (today_utc() + timedelta(days=2)).isoformat()):
        refused = problem(call(stack, service, "POST", path, {"as_of": ahead}), 422)
        assert fields(refused) == ["body.as_of"], refused
        assert ahead == "9999-12-31" or "ahead of the service's clock" in refused["detail"]
    assert call(stack, service, "GET", listing).json() == before
    # a past date (a simulation, a catch-up) still runs, and so does tomorrow (the tolerance)
    for day in ("2024-04-02", (today_utc() + timedelta(days=1)).isoformat()):
        answer = call(stack, service, "POST", path, {"as_of": day})
        assert answer.status_code == 200, answer.text
        assert answer.json()["as_of"] == day


def test_dated_checks_and_promises_ahead_of_the_clock_are_refused(stack: ServiceStack) -> None:
    seeded = stack.seeded
    ahead = (today_utc() + timedelta(days=2)).isoformat()
    check = {"customer_id": seeded.customer_id, "order_id": "ORD-AHEAD", "amount": "1.00",
             "currency": "EUR", "on": ahead}
    assert fields(problem(call(stack, "credit", "POST", "/credit-checks", check), 422)) == ["body.on"]
    promises = f"/customers/{seeded.customer_id}/promises"
    promise = {"promised_date": "2999-01-01", "amount": "10.00", "made_on": ahead}
    assert fields(problem(call(stack, "dunning", "POST", promises, promise), 422)) == ["body.made_on"]
    # beyond the calendar the domain computes in: a validation error, not an overflow
    promise = {"promised_date": "9999-12-31", "amount": "10.00"}
    assert fields(problem(call(stack, "dunning", "POST", promises, promise), 422)) == ["body.promised_date"]


@pytest.mark.parametrize(("service", "path", "name"), [
    ("dunning", "/notices", "level"),
    ("ledger", "/audit/customers/{customer}", "cursor"),
    ("credit", "/audit/customers/{customer}", "cursor"),
])
def test_integers_beyond_a_bigint_are_422(stack: ServiceStack, service: str, path: str, name: str) -> None:
    path = path.format(customer=stack.seeded.customer_id)
    refused = problem(call(stack, service, "GET", path, **{name: str(BIGINT_MAX + 1)}), 422)
    assert fields(refused) == [f"query.{name}"]
    assert call(stack, service, "GET", path, **{name: "1"}).status_code == 200


def test_money_in_a_request_is_a_decimal_string(stack: ServiceStack) -> None:
    limit = {"currency": "EUR", "amount": 2000}
    path = f"/customers/{stack.seeded.customer_id}/credit-limit"
    assert fields(problem(call(stack, "credit", "PUT", path, limit), 422)) == ["body.amount"]
    for service, model in (("credit", "LimitIn"), ("dunning", "PromiseIn")):
        schema = call(stack, service, "GET", "/openapi.json").json()["components"]["schemas"][model]
        assert schema["properties"]["amount"]["type"] == "string", schema


def test_what_the_read_models_cannot_hold_is_refused_at_the_edge(stack: ServiceStack) -> None:
    """An amount beyond the money column or a NUL character would stop the projections
    behind its event for good: 422 naming the field, before anything is stored."""
    customer = stack.seeded.customer_id
    check = {"customer_id": customer, "order_id": "ORD-HUGE", "amount": "99999999999999",
             "currency": "EUR"}
    assert fields(problem(call(stack, "credit", "POST", "/credit-checks", check), 422)) == ["body.amount"]
    beyond_the_ceiling = {**check, "order_id": "ORD-HUGE-2", "amount": "1000000000000.00"}
    assert fields(problem(call(stack, "credit", "POST", "/credit-checks", beyond_the_ceiling), 422)) == [
        "body.amount"]
    hold = {"reason": "held\x00"}
    assert fields(problem(call(stack, "credit", "POST", f"/customers/{customer}/holds", hold), 422)) == [
        "body.reason"]
    assert call(stack, "credit", "GET", "/holds", customer_id=customer).json()["holds"]  # still projected


@pytest.mark.parametrize(("path", "name", "value"), [
    ("/aging", "as_of", "0001-01-01"),
    ("/metrics/receivables", "as_of", "0001-01-01"),
    ("/customers/{customer}/balance", "known_at", "0001-01-01T00:00:00+05:00"),
    ("/customers/{customer}/balance", "known_at", "9999-12-31T23:59:59-05:00"),
])
def test_dates_outside_the_calendar_are_422(stack: ServiceStack, path: str, name: str, value: str) -> None:
    path = path.format(customer=stack.seeded.customer_id)
    assert fields(problem(call(stack, "ledger", "GET", path, **{name: value}), 422)) == [f"query.{name}"]


@pytest.mark.parametrize(("service", "path"), [
    ("credit", "/holds"), ("dunning", "/notices"), ("ledger", "/invoices/{invoice}"),
])
def test_an_unreachable_store_is_503_with_retry_after(stack: ServiceStack, service: str, path: str) -> None:
    path = path.format(invoice=stack.seeded.invoice_id)
    state = stack.apps[service].app.state
    engine, state.engine = state.engine, create_engine(UNREACHABLE)
    reads = getattr(state, "reads", None)  # the ledger's hot reads
    state.reads = HotReads(state.engine, timeout=0.5)
    try:
        response = call(stack, service, "GET", path)
    finally:
        stack.run_in_loop(state.reads.close())
        state.engine.dispose()
        state.engine, state.reads = engine, reads
    assert problem(response, 503)["type"].endswith("/store-unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert call(stack, service, "GET", path).status_code == 200


def test_the_documents_list_the_problem_answers(stack: ServiceStack) -> None:
    expected = {
        ("credit", "/holds", "get"): {"401", "403", "422", "503"},
        ("credit", "/holds/{hold_id}/release", "post"): {"400", "401", "403", "404", "409", "422", "503"},
        ("dunning", "/runs", "post"): {"400", "401", "403", "409", "422", "503"},
        ("ledger", "/invoices/{invoice_id}", "get"): {"401", "403", "404", "422", "503"},
    }
    for (service, path, method), problems in expected.items():
        document = call(stack, service, "GET", "/openapi.json").json()
        responses = document["paths"][path][method]["responses"]
        listed = {status for status in responses if status >= "400"}
        assert listed == problems, (service, path, listed)
        for status in listed:
            assert list(responses[status]["content"]) == ["application/problem+json"]
        assert "Retry-After" in responses["503"]["headers"]
