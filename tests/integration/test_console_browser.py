"""The console and the portal in a real Chromium (Debian's, driven by Playwright; no browser is
downloaded), on a stack started here: sign in, the dashboard's figures against the ledger's, the
chart, the worklist's filter, a promise, a plan and a hold release made by clicking, the portal on
a phone-sized screen with its dispute and its EPC QR code decoded by a real decoder (zxing-cpp).

Screenshots of the main pages are kept in ``build/test-artifacts/console/`` (README shows them).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.integration.console_harness import ConsoleStack, console_stack, wait_until
from tests.integration.stack_harness import ALL_SCOPES_TOKEN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("RECEIVABLES_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build"
                                / "test-artifacts")) / "console"

sync_api = pytest.importorskip("playwright.sync_api")


def _no_browser(reason: str) -> None:
    message = "\n" + "!" * 78 + f"\n  NO BROWSER TESTS: {reason}.\n  `apt-get install -y chromium` " \
              "(.ci/run does) and `pip install -e '.[test]'`.\n" + "!" * 78
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(reason=message)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is missing")
    with console_stack(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: ConsoleStack) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(stack: ConsoleStack, browser: object) -> Iterator[object]:
    """A signed-in page of its own browser context (cookies of its own)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(f"{stack.console.url}/")
    assert tab.url.endswith("/sign-in")
    tab.get_by_label("API token").fill(ALL_SCOPES_TOKEN)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(f"{stack.console.url}/")
    try:
        yield tab
    finally:
        context.close()


def shot(tab: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_in_and_the_dashboard_equals_the_ledger(stack: ConsoleStack, page: object) -> None:
    as_of = stack.stack.seeded.as_of
    page.goto(f"{stack.console.url}/?as_of={as_of}")
    (row,) = stack.api("ledger", "/aging", as_of=as_of, group_by="currency").json()["rows"]
    for bucket in ("current", "31-60", "disputed", "total"):
        shown = page.locator(f'#aging td[data-bucket="{bucket}"]').get_attribute("data-value")
        assert shown == row[bucket], bucket
    (eur,) = stack.api("ledger", "/metrics/receivables", as_of=as_of).json()["currencies"]
    for metric in ("dso", "best_possible_dso", "cei"):
        assert page.locator(f'td[data-metric="{metric}"]').get_attribute("data-value") == eur[metric]
    chart = page.locator("#aging-chart svg")
    assert chart.is_visible() and chart.bounding_box()["width"] > 200
    assert page.locator("#aging-chart svg rect.rect").count() >= 1  # pygal's bars
    # the forecast arrives after the page, by its script
    page.locator('#forecast[data-loaded="true"] table.forecast').wait_for()
    expected = stack.api("ledger", "/forecast/collections", as_of=as_of).json()["currencies"][0]["weeks"]
    first_week = page.locator("#forecast td[data-value]").first
    assert first_week.get_attribute("data-value") == expected[0]["expected"]
    shot(page, "dashboard")


def test_the_worklist_filters_by_collector_and_assigns_from_a_row(stack: ConsoleStack, page: object) -> None:
    for collector in ("COL-ANNA", "COL-BEN"):
        answer = httpx.put(f"{stack.stack.urls['dunning']}/collectors/{collector}",
                           headers=stack.stack.headers(),
                           json={"name": collector.title(), "email": f"{collector.lower()}@example.com",
                                 "active": True})
        assert answer.status_code in (200, 201), answer.text
    as_of = stack.stack.seeded.as_of
    page.goto(f"{stack.console.url}/worklist?as_of={as_of}")
    page.locator("details.actions summary").first.click()
    assign = page.get_by_role("form", name="Assign a collector").first
    assign.get_by_label("Collector").select_option("COL-ANNA")
    assign.get_by_role("button", name="Assign").click()
    page.wait_for_url(re.compile(r"done=assigned"))
    assert stack.api("dunning", "/customers/C-SEED/dunning").json()["collector_id"] == "COL-ANNA"
    page.goto(f"{stack.console.url}/worklist?as_of={as_of}")
    page.locator("#wl-collector").select_option("COL-ANNA")
    page.get_by_role("button", name="Filter").click()
    assert page.locator('tr[data-customer="C-SEED"]').count() == 1
    shot(page, "worklist")
    page.locator("#wl-collector").select_option("COL-BEN")
    page.get_by_role("button", name="Filter").click()
    assert page.locator('tr[data-customer="C-SEED"]').count() == 0
    assert page.get_by_text("Nobody to call").is_visible()


def test_a_promise_and_a_plan_made_by_clicking_reach_dunning(stack: ConsoleStack, page: object) -> None:
    page.goto(f"{stack.console.url}/customers/C-SEED?as_of={stack.stack.seeded.as_of}")
    shot(page, "customer")
    page.locator("details.actions summary").click()
    page.get_by_label("Promised date").fill("2024-04-10")
    page.get_by_label(re.compile("^Amount")).fill("250.00")
    page.get_by_role("button", name="Record promise").click()
    page.wait_for_url(re.compile(r"done=promise"))
    assert page.get_by_role("status").inner_text() == "The promise to pay was recorded."
    promises = stack.api("dunning", "/customers/C-SEED/dunning").json()["promises"]
    assert ("250.00", "2024-04-10") in [(p["amount"], p["promised_date"]) for p in promises]
    page.locator("details.actions summary").click()
    plan_id = page.locator('input[name="plan_id"]').get_attribute("value")
    page.get_by_label(re.compile("^Instalments")).fill("2024-04-30 500.00\n2024-05-31 1000.00")
    page.get_by_label("Reason").fill("seasonal business")
    page.get_by_role("button", name="Open plan").click()
    page.wait_for_load_state()
    assert "done=plan" in page.url, page.locator("main").inner_text()
    plan = stack.api("dunning", f"/payment-plans/{plan_id}").json()
    assert plan["status"] == "requested"
    assert [i["amount"] for i in plan["instalments"]] == ["500.00", "1000.00"]


def test_a_hold_is_released_with_a_reason_by_clicking(stack: ConsoleStack, page: object) -> None:
    hold_id = stack.stack.seeded.hold_id
    page.goto(f"{stack.console.url}/holds")
    shot(page, "holds")
    row = page.locator(f'tr[data-hold="{hold_id}"]')
    row.get_by_label("Reason").fill("customer paid the overdue part")
    row.get_by_role("button", name="Release").click()
    page.wait_for_url(re.compile(r"done=released"))
    hold = next(h for h in stack.api("credit", "/holds").json()["holds"] if h["hold_id"] == hold_id)
    assert (hold["status"], hold["release_reason"], hold["released_by"]) == (
        "released", "customer paid the overdue part", "tester")


def _portal_link(stack: ConsoleStack, customer_id: str) -> str:
    answer = httpx.post(f"{stack.console.url}/portal-links", json={"customer_id": customer_id},
                        headers={"Authorization": f"Bearer {ALL_SCOPES_TOKEN}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["url"]).replace(stack.settings.public_url, stack.console.url)


def test_the_portal_on_a_phone_disputes_and_pays_by_qr_code(stack: ConsoleStack, browser: object) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    image = pytest.importorskip("PIL.Image")
    url = _portal_link(stack, "C-SEED")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = context.new_page()
    try:
        tab.goto(url)
        assert tab.locator('tr[data-invoice="INV-SEED-1"]').count() == 1
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the portal scrolls sideways on a phone ({width}px)"
        shot(tab, "portal")
        before = Decimal(stack.api("ledger", "/invoices/INV-SEED-1").json()["disputed_amount"])
        tab.get_by_text("Dispute this invoice").click()
        tab.get_by_label("Amount in dispute (empty: all of it)").fill("25.00")
        tab.get_by_label("What is wrong?").fill("one pallet short")
        tab.get_by_role("button", name="Send dispute").click()
        tab.wait_for_url(re.compile(r"done=dispute"))
        wait_until(lambda: Decimal(stack.api("ledger", "/invoices/INV-SEED-1").json()["disputed_amount"]),
                   lambda disputed: disputed == before + Decimal("25.00"),
                   what="the portal's dispute in the ledger")

        invoice = stack.api("ledger", "/invoices/INV-SEED-1").json()
        tab.get_by_role("link", name="Pay by bank transfer").click()
        qr = tab.locator("#epc-qr svg")
        assert qr.is_visible()
        shot(tab, "portal-pay")
        decoded = zxingcpp.read_barcodes(image.open(io.BytesIO(qr.screenshot())))
        assert decoded, "no QR code found in the page's EPC code"
        lines = decoded[0].text.split("\n")
        assert lines[:4] == ["BCD", "002", lines[2], "SCT"] and lines[2] in ("1", "2")
        settings = stack.settings
        assert lines[4:7] == [settings.creditor_bic, settings.creditor_name, settings.creditor_iban]
        assert lines[7].startswith("EUR")
        due = Decimal(invoice["open_amount"]) - Decimal(invoice["disputed_amount"])
        assert Decimal(lines[7][3:]) == due
        reference = tab.locator("#reference").get_attribute("data-value")
        assert lines[9] == "RF37Z9WE33EQAWEAO4H3MFETL" == reference
    finally:
        context.close()


def test_a_tampered_portal_link_is_refused_in_the_browser(stack: ConsoleStack, browser: object) -> None:
    url = _portal_link(stack, "C-SEED")
    context = browser.new_context()
    tab = context.new_page()
    try:
        response = tab.goto(url[:-3] + ("xyz" if not url.endswith("xyz") else "abc"))
        assert response.status == 403 and tab.get_by_text("This link is not valid.").is_visible()
        assert tab.locator('tr[data-invoice]').count() == 0
    finally:
        context.close()


def test_the_portal_in_simplified_chinese(stack: ConsoleStack, browser: object) -> None:
    url = _portal_link(stack, "C-SEED")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN")
    tab = context.new_page()
    try:
        tab.goto(url)
        assert "您在" in tab.locator("h1").inner_text()
        assert tab.get_by_role("link", name="银行转账付款").count() == 1
        shot(tab, "portal-zh")
    finally:
        context.close()


def test_signing_in_works_with_the_keyboard_alone(stack: ConsoleStack, browser: object) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    tab = context.new_page()
    try:
        tab.goto(f"{stack.console.url}/sign-in")
        tab.keyboard.press("Tab")
        assert tab.evaluate("document.activeElement.className") == "skip"  # the first stop skips the header
        for _ in range(10):
            if tab.evaluate("document.activeElement.id") == "token":
                break
            tab.keyboard.press("Tab")
        assert tab.evaluate("document.activeElement.id") == "token", "the token field is not reachable by Tab"
        tab.keyboard.type(ALL_SCOPES_TOKEN)
        tab.keyboard.press("Enter")
        tab.wait_for_url(f"{stack.console.url}/")
        assert tab.get_by_role("heading", name="Dashboard").is_visible()
    finally:
        context.close()
