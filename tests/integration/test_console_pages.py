"""The console's pages over HTTP, as a browser without JavaScript uses them, on a stack started
here (broker, the three services with the seeded book, the console): sign-in and its cookie,
figures equal to the APIs', forms that reach the services, and what is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.console_harness import (
    APPROVER_TOKEN,
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
        client.get("/sign-in")  # with the form's cookie: the value itself is compared
        for offered in ("forged", "é"):
            answer = client.post("/sign-in", data={"token": ALL_SCOPES_TOKEN, "csrf_token": offered})
            assert answer.status_code == 403, offered


def test_an_altered_session_cookie_is_no_session(stack: ConsoleStack, browser: httpx.Client) -> None:
    cookie = browser.cookies["receivables_session"]
    with stack.browser_client() as other:
        other.cookies.set("receivables_session", cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB"))
        assert other.get("/").status_code == 303


def test_sign_out_ends_the_session_and_a_copied_cookie_with_it(stack: ConsoleStack) -> None:
    with stack.browser_client() as client:
        assert sign_in(client, READER_TOKEN).status_code == 303
        copied = client.cookies["receivables_session"]
        page = client.get("/", params={"as_of": "2024-03-15"})
        assert page.status_code == 200
        answer = client.post("/sign-out", data={"csrf_token": form_csrf(page.text)})
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
        assert client.get("/").status_code == 303  # the cookie is gone
    with stack.browser_client() as thief:
        thief.cookies.set("receivables_session", copied)
        answer = thief.get("/", params={"as_of": "2024-03-15"})
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"


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
    assert 'data-fragment="/dashboard/forecast?as_of=2024-03-15' in page.text  # arrives after the page


def test_the_forecast_fragment_equals_the_ledgers_forecast(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    as_of = stack.stack.seeded.as_of
    expected = stack.api("ledger", "/forecast/collections", as_of=as_of).json()
    fragment = browser.get("/dashboard/forecast", params={"as_of": as_of}, headers={"X-Fragment": "1"})
    assert fragment.status_code == 200 and "<html" not in fragment.text  # a piece of the dashboard
    (block,) = expected["currencies"]
    shown = re.findall(r'<td class="num" data-value="([^"]+)">', fragment.text)
    assert shown == [week["expected"] for week in block["weeks"]]
    page = browser.get("/dashboard/forecast", params={"as_of": as_of})  # without the script: a page
    assert page.status_code == 200 and "<html" in page.text and 'id="forecast-chart"' in page.text


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


def test_worklist_shows_the_overdue_customer_and_filters_by_collector(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    as_of = stack.stack.seeded.as_of
    page = browser.get("/worklist", params={"as_of": as_of})
    assert page.status_code == 200 and 'data-customer="C-SEED"' in page.text
    api = stack.api("dunning", "/worklist", as_of=as_of).json()["customers"]
    assert re.search(r'data-label="Overdue" class="num" data-value="([^"]+)"', page.text).group(1) == \
        api[0]["overdue_amount"]
    filtered = browser.get("/worklist", params={"as_of": as_of, "collector_id": "NOBODY"})
    assert filtered.status_code == 200 and 'data-customer="C-SEED"' not in filtered.text
    assert "Nobody to call" in filtered.text


def test_a_promise_and_a_plan_made_from_the_pages_reach_dunning(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    customer = stack.stack.seeded.customer_id
    page = browser.get(f"/customers/{customer}", params={"as_of": stack.stack.seeded.as_of})
    assert page.status_code == 200
    csrf = form_csrf(page.text)
    answer = browser.post(f"/customers/{customer}/promises", data={
        "csrf_token": csrf, "promised_date": "2024-03-30", "amount": "400.00", "currency": "EUR",
        "made_on": "2024-03-15", "back": f"/customers/{customer}"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("done=promise")
    promises = stack.api("dunning", f"/customers/{customer}/dunning").json()["promises"]
    assert [(p["amount"], p["promised_date"]) for p in promises] == [("400.00", "2024-03-30")]
    plan_id = re.search(r'name="plan_id" value="([^"]+)"', page.text).group(1)
    answer = browser.post(f"/customers/{customer}/plans", data={
        "csrf_token": csrf, "plan_id": plan_id, "currency": "EUR", "reason": "cash flow",
        "instalments": "2024-04-15 700.00\n2024-05-15 700.00", "requested_on": "2024-03-15"})
    # short of the covered open amount (1500.00): dunning's reason, shown to the person
    assert answer.status_code == 422 and "body.instalments" in answer.text, answer.text
    answer = browser.post(f"/customers/{customer}/plans", data={
        "csrf_token": csrf, "plan_id": plan_id, "currency": "EUR", "reason": "cash flow",
        "instalments": "2024-04-15 750.00\n2024-05-15 750.00", "requested_on": "2024-03-15"})
    assert answer.status_code == 303, answer.text
    plan = stack.api("dunning", f"/payment-plans/{plan_id}").json()
    assert plan["status"] == "requested" and plan["customer_id"] == customer
    plans_page = browser.get("/plans")
    assert f'data-plan="{plan_id}"' in plans_page.text and 'data-action="approve"' in plans_page.text


def test_a_bad_amount_is_refused_with_the_field_named(stack: ConsoleStack, browser: httpx.Client) -> None:
    customer = stack.stack.seeded.customer_id
    csrf = form_csrf(browser.get("/worklist").text)
    answer = browser.post(f"/customers/{customer}/promises", data={
        "csrf_token": csrf, "promised_date": "2024-03-30", "amount": "lots"})
    assert answer.status_code == 422 and "amount" in answer.text
    answer = browser.post(f"/customers/{customer}/plans", data={
        "csrf_token": csrf, "plan_id": "PLAN-BAD", "currency": "EUR", "reason": "x", "instalments": "soon"})
    assert answer.status_code == 422 and "instalments, line 1" in answer.text


def test_a_form_without_its_csrf_token_is_refused_and_nothing_happens(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    hold_id = stack.stack.seeded.hold_id
    for csrf in (None, "forged", "é"):
        data = {"reason": "should not happen"} | ({"csrf_token": csrf} if csrf else {})
        answer = browser.post(f"/holds/{hold_id}/release", data=data)
        assert answer.status_code == 403 and "did not come from this console" in answer.text
    holds = stack.api("credit", "/holds").json()["holds"]
    assert next(h for h in holds if h["hold_id"] == hold_id)["status"] == "active"


def test_a_reader_sees_no_buttons_and_is_refused_when_posting_anyway(stack: ConsoleStack) -> None:
    hold_id, customer = stack.stack.seeded.hold_id, stack.stack.seeded.customer_id
    with stack.browser_client() as client:
        assert sign_in(client, READER_TOKEN).status_code == 303
        holds = client.get("/holds")
        assert f'data-hold="{hold_id}"' in holds.text and 'data-action="release"' not in holds.text
        worklist = client.get("/worklist", params={"as_of": stack.stack.seeded.as_of})
        assert 'data-action="promise"' not in worklist.text and 'data-action="plan"' not in worklist.text
        customer_page = client.get(f"/customers/{customer}")
        assert 'data-action="portal-link"' not in customer_page.text
        csrf = form_csrf(holds.text)
        answer = client.post(f"/holds/{hold_id}/release", data={"csrf_token": csrf, "reason": "sneaky"})
        assert answer.status_code == 403 and "credit:override" in answer.text
        answer = client.post(f"/customers/{customer}/promises", data={
            "csrf_token": csrf, "promised_date": "2024-03-30", "amount": "1.00"})
        assert answer.status_code == 403
    # and the owning service refuses the reader's token too
    refused = httpx.post(f"{stack.stack.urls['credit']}/holds/{hold_id}/release", json={"reason": "sneaky"},
                         headers={"Authorization": f"Bearer {READER_TOKEN}"})
    assert refused.status_code == 403


def test_a_hold_is_released_with_a_reason_from_the_holds_page(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    hold_id = stack.stack.seeded.hold_id
    page = browser.get("/holds")
    assert f'data-hold="{hold_id}"' in page.text
    answer = browser.post(f"/holds/{hold_id}/release", data={"csrf_token": form_csrf(page.text),
                                                            "reason": "paid by phone"})
    assert answer.status_code == 303 and "done=released" in answer.headers["location"]
    hold = next(h for h in stack.api("credit", "/holds").json()["holds"] if h["hold_id"] == hold_id)
    assert hold["status"] == "released" and hold["release_reason"] == "paid by phone"
    assert hold["released_by"] == "tester"  # audited with the signed-in token's identity
    assert f'data-hold="{hold_id}"' not in browser.get("/holds").text


def test_customer_header_figures_equal_the_services(stack: ConsoleStack, browser: httpx.Client) -> None:
    seeded = stack.stack.seeded
    page = browser.get(f"/customers/{seeded.customer_id}", params={"as_of": seeded.as_of})
    figures = dict(re.findall(r'data-figure="([a-z_]+)" data-value="([^"]*)"', page.text))
    (balance,) = stack.api("ledger", f"/customers/{seeded.customer_id}/balance", as_of=seeded.as_of
                           ).json()["balances"]
    credit = stack.api("credit", f"/customers/{seeded.customer_id}/credit", as_of=seeded.as_of).json()
    assert figures["open_amount"] == balance["open_amount"]
    assert figures["overdue_amount"] == balance["overdue_amount"]
    assert figures["limit"] == credit["limit"] and figures["available"] == credit["available"]
    assert figures["risk_grade"] == credit["risk_grade"]
    for section in ("open-items", "timeline", "notices", "plans", "credit", "predictions"):
        assert f'<section id="{section}">' in page.text


def test_every_page_answers_and_an_unknown_customer_is_said_so(browser: httpx.Client) -> None:
    for path in ("/warnings", "/holds", "/policies", "/plans", "/worklist"):
        page = browser.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "Traceback" not in page.text
    assert 'data-policy="default"' in browser.get("/policies").text
    unknown = browser.get("/customers/NO-SUCH-CUSTOMER")
    assert unknown.status_code == 200 and "No service knows a customer" in unknown.text
    assert browser.get("/no/such/page").status_code == 404


def test_the_pages_speak_chinese_when_asked_with_money_and_dates_per_locale(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    page = browser.get("/", params={"as_of": "2024-03-15"}, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert page.status_code == 200 and '<html lang="zh-Hans">' in page.text
    assert "账龄分布" in page.text and "应收账款周转天数" in page.text
    assert "2024年3月15日" in page.text  # the date as Chinese readers write it
    chosen = browser.get("/language/zh", params={"back": "/worklist"})
    assert chosen.status_code == 303 and chosen.headers["location"] == "/worklist"
    worklist = browser.get("/worklist", params={"as_of": "2024-03-15"})
    assert "工作清单" in worklist.text
    browser.get("/language/en")
    assert "Worklist" in browser.get("/worklist").text
    assert browser.get("/language/fr").status_code == 404


def test_a_plan_is_approved_by_someone_other_than_who_asked_for_it(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    dunning = stack.stack.urls["dunning"]
    requested = httpx.get(f"{dunning}/payment-plans", params={"status": "requested"},
                          headers=stack.stack.headers()).json()["plans"]
    if not requested:  # this module's plan test did not run first: ask for one as "tester"
        answer = httpx.post(f"{dunning}/customers/C-SEED/payment-plans", headers=stack.stack.headers(), json={
            "plan_id": "PLAN-FOUR-EYES", "currency": "EUR", "reason": "four eyes",
            "requested_on": "2024-03-15", "instalments": [{"due_date": "2024-04-15", "amount": "1500.00"}]})
        assert answer.status_code == 201, answer.text
        requested = [answer.json()]
    plan_id = requested[0]["plan_id"]
    page = browser.get("/plans")
    answer = browser.post(f"/plans/{plan_id}/approve", data={"csrf_token": form_csrf(page.text)})
    # dunning refuses the requester's own approval; the page says so, naming the service
    assert answer.status_code == 403 and "collections (dunning)" in answer.text, answer.text
    with stack.browser_client() as manager:
        assert sign_in(manager, APPROVER_TOKEN).status_code == 303
        plans = manager.get("/plans")
        assert f'data-plan="{plan_id}"' in plans.text and 'data-action="approve"' in plans.text
        assert 'data-action="promise"' not in manager.get("/worklist").text  # no dunning:write
        answer = manager.post(f"/plans/{plan_id}/approve", data={"csrf_token": form_csrf(plans.text)})
        assert answer.status_code == 303 and "done=approved" in answer.headers["location"]
    plan = httpx.get(f"{dunning}/payment-plans/{plan_id}", headers=stack.stack.headers()).json()
    assert plan["status"] == "active"


def test_a_call_logged_from_the_worklist_is_on_the_customers_timeline(
    stack: ConsoleStack, browser: httpx.Client
) -> None:
    page = browser.get("/worklist", params={"as_of": stack.stack.seeded.as_of})
    answer = browser.post("/customers/C-SEED/calls", data={
        "csrf_token": form_csrf(page.text), "outcome": "left_message", "note": "voicemail, will call back",
        "occurred_on": "2024-03-15", "back": "/worklist?as_of=2024-03-15"})
    assert answer.status_code == 303 and answer.headers["location"] == "/worklist?as_of=2024-03-15&done=call"
    timeline = stack.api("dunning", "/customers/C-SEED/timeline").json()
    assert any("voicemail" in json.dumps(entry) for entry in timeline), timeline


def test_a_warning_is_acknowledged_from_the_warnings_page(stack: ConsoleStack, browser: httpx.Client) -> None:
    page = browser.get("/warnings")
    warning_id = re.search(r'data-warning="([^"]+)"', page.text).group(1)
    answer = browser.post(f"/warnings/{warning_id}/acknowledge", data={
        "csrf_token": form_csrf(page.text), "note": "limit review booked"})
    assert answer.status_code == 303 and "done=acknowledged" in answer.headers["location"]
    warnings = stack.api("credit", "/warnings").json()["warnings"]
    (warning,) = [w for w in warnings if w["warning_id"] == warning_id]
    assert [a["note"] for a in warning["acknowledgements"]] == ["limit review booked"]
