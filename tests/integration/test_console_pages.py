"""The console's pages over HTTP, as a browser without JavaScript uses them, on a stack started
here (broker, the three services with the seeded book, the console): sign-in and its cookie,
figures equal to the APIs', forms that reach the services, and what is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.console_harness import (
    READER_TOKEN,
    ConsoleStack,
    console_stack,
    form_csrf,
    sign_in,
)
from tests.integration.stack_harness import ALL_SCOPES_TOKEN


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    directory: Path = tmp_path_factory.mktemp("console")
    with console_stack(directory) as running:
        yield running


@pytest.fixture
def browser(stack: ConsoleStack) -> Iterator[httpx.Client]:
    with stack.browser_client() as client:
        assert sign_in(client, ALL_SCOPES_TOKEN).status_code == 303
        yield client


def data_values(html: str, attribute: str) -> dict[str, str]:
    return dict(re.findall(rf'data-{attribute}="([^"]+)" data-value="([^"]*)"', html))


def test_a_page_without_a_session_sends_to_the_sign_in_page(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        answer = client.get("/")
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"


def test_sign_in_sets_an_http_only_strict_cookie_and_never_shows_the_token(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        answer = sign_in(client, ALL_SCOPES_TOKEN)
        assert answer.status_code == 303
        cookie = next(value for name, value in answer.headers.multi_items()
                      if name == "set-cookie" and value.startswith("receivables_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert ALL_SCOPES_TOKEN not in cookie  # encrypted, not just signed
        page = client.get("/", params={"as_of": "2024-03-15"})
        assert page.status_code == 200 and ALL_SCOPES_TOKEN not in page.text
        assert "tester" in page.text


def test_an_unknown_token_is_refused(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        answer = sign_in(client, "not-a-token")
        assert answer.status_code == 401 and "not known" in answer.text
        assert "receivables_session" not in answer.headers.get("set-cookie", "")


def test_sign_in_without_its_csrf_value_is_refused(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        answer = client.post("/sign-in", data={"token": ALL_SCOPES_TOKEN, "csrf_token": "forged"})
        assert answer.status_code == 403


def test_an_altered_session_cookie_is_no_session(stack: ConsoleStack, browser: httpx.Client) -> None:
    cookie = browser.cookies["receivables_session"]
    with stack.browser_client() as other:
        other.cookies.set("receivables_session", cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB"))
        assert other.get("/").status_code == 303


def test_dashboard_figures_equal_the_ledgers(stack: ConsoleStack, browser: httpx.Client) -> None:
    as_of = stack.stack.seeded.as_of
    page = browser.get("/", params={"as_of": as_of})
    assert page.status_code == 200
    aging = stack.api("ledger", "/aging", as_of=as_of, group_by="currency").json()
    (row,) = aging["rows"]
    shown = data_values(page.text, "bucket")
    assert shown == {bucket: row[bucket] for bucket in [*aging["buckets"], "disputed", "total"]}
    assert shown["31-60"] == "1500.00"  # the seeded invoice, 44 days past due
    metrics = stack.api("ledger", "/metrics/receivables", as_of=as_of).json()
    figures = data_values(page.text, "metric")
    (eur,) = metrics["currencies"]
    for name in ("dso", "best_possible_dso", "cei", "ar_balance", "credit_sales"):
        assert figures[name] == eur[name], name
    assert '<svg' in page.text and 'id="aging-chart"' in page.text  # drawn by pygal, inline
    assert "kozea.github.io" not in page.text  # pygal's default script URL is turned off
    assert "Expected collections by week" in page.text


def test_known_at_before_anything_was_recorded_shows_an_empty_book(browser: httpx.Client) -> None:
    page = browser.get("/", params={"as_of": "2024-03-15", "known_at": "2001-01-01T00:00:00Z"})
    assert page.status_code == 200 and "Nothing is open on this date." in page.text


def test_a_bad_date_is_named(browser: httpx.Client) -> None:
    page = browser.get("/", params={"as_of": "15/03/2024"})
    assert page.status_code == 422 and "as_of: must be a date" in page.text


def test_a_service_that_is_down_is_said_so_not_a_stack_trace(stack: ConsoleStack) -> None:
    from tests.integration.console_harness import ConsoleServer, console_settings

    settings = console_settings(stack.stack, ledger_url="http://127.0.0.1:9", backend_timeout_seconds=2)
    with ConsoleServer(settings) as console, httpx.Client(base_url=console.url, timeout=30) as client:
        sign_in(client, ALL_SCOPES_TOKEN)
        page = client.get("/", params={"as_of": "2024-03-15"})
        assert page.status_code == 200
        assert "The ledger service cannot be reached right now." in page.text
        assert "Traceback" not in page.text


def test_the_reader_sees_the_dashboard_but_no_button_it_may_not_press(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        assert sign_in(client, READER_TOKEN).status_code == 303
        page = client.get("/", params={"as_of": "2024-03-15"})
        assert page.status_code == 200 and 'data-bucket="total"' in page.text
        assert form_csrf(page.text)  # sign-out only
