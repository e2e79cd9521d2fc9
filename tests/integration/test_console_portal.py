"""The customer portal and the payment webhook over HTTP, on a stack started here: links
issued by ``POST /portal-links``, one customer per link whatever the URL or a form says,
altered, expired and withdrawn links refused, a dispute that reaches the ledger, the statement
PDF, the RF reference, and a provider's payment applied once however often it is sent."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from services.console.formatting import money
from services.console.payment_reference import rf_reference
from services.console.portal_links import PortalLinks
from tests.integration.console_harness import (
    READER_TOKEN,
    SECRET,
    WEBHOOK_SECRET,
    ConsoleServer,
    ConsoleStack,
    console_settings,
    console_stack,
    publish,
    topic_records,
    wait_until,
)
from tests.integration.ledger_harness import invoice_issued
from tests.integration.stack_harness import ALL_SCOPES_TOKEN

OTHER, OTHER_INVOICE = "C-OTHER", "INV-OTHER-1"
PAYER, PAYER_INVOICE = "C-PAYER", "INV-PAYER-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    directory: Path = tmp_path_factory.mktemp("portal")
    with console_stack(directory) as running:
        publish(running.stack, [
            invoice_issued(OTHER, OTHER_INVOICE, "999.00", issue="2024-01-10", due="2024-02-09"),
            invoice_issued(PAYER, PAYER_INVOICE, "1000.00", issue="2024-02-01", due="2024-03-02"),
        ])
        for invoice in (OTHER_INVOICE, PAYER_INVOICE):
            wait_until(lambda i=invoice: running.api("ledger", f"/invoices/{i}").status_code,
                       lambda status: status == 200, what=f"the ledger has {invoice}")
        yield running


def issue_link(stack: ConsoleStack, customer_id: str, token: str = ALL_SCOPES_TOKEN,
               **extra: Any) -> httpx.Response:
    return httpx.post(f"{stack.console.url}/portal-links", json={"customer_id": customer_id, **extra},
                      headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def seed_link(stack: ConsoleStack) -> str:
    answer = issue_link(stack, stack.stack.seeded.customer_id, valid_days=7)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert body["url"].startswith(stack.settings.public_url + "/portal/")
    return str(body["url"].removeprefix(stack.settings.public_url))


def portal_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_portal_links_need_a_token_with_portal_admin(stack: ConsoleStack) -> None:
    assert httpx.post(f"{stack.console.url}/portal-links", json={"customer_id": "C-SEED"}).status_code == 401
    refused = issue_link(stack, "C-SEED", token=READER_TOKEN)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert issue_link(stack, "C-SEED", valid_days=0).status_code == 422
    bad = issue_link(stack, "")
    assert bad.status_code == 422 and "customer_id" in bad.json()["detail"]


def test_the_portal_shows_its_customer_and_nobody_else(stack: ConsoleStack, seed_link: str) -> None:
    page = httpx.get(stack.console.url + seed_link)
    assert page.status_code == 200
    assert 'data-invoice="INV-SEED-1"' in page.text and "C-SEED" in page.text
    for other in (OTHER, OTHER_INVOICE, PAYER, PAYER_INVOICE):
        assert other not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"  # the link never leaks to another site
    assert '<label for="dreason-1">' in page.text  # forms are labelled


def test_no_url_or_form_field_reaches_another_customer(stack: ConsoleStack, seed_link: str) -> None:
    base = stack.console.url + seed_link
    pay = httpx.get(f"{base}/pay/{OTHER_INVOICE}")
    assert pay.status_code == 404 and "999" not in pay.text and OTHER not in pay.text
    csrf = portal_csrf(httpx.get(base).text)
    dispute = httpx.post(f"{base}/disputes", data={"csrf_token": csrf, "invoice_id": OTHER_INVOICE,
                                                    "reason": "not mine", "customer_id": OTHER})
    assert dispute.status_code == 404
    # a customer_id smuggled into the query or a form is ignored: still C-SEED's page
    page = httpx.get(base, params={"customer_id": OTHER})
    assert OTHER_INVOICE not in page.text and "INV-SEED-1" in page.text
    assert stack.api("ledger", f"/invoices/{OTHER_INVOICE}").json()["disputed_amount"] == "0.00"


def test_altered_expired_and_withdrawn_links_are_refused(stack: ConsoleStack, seed_link: str) -> None:
    token = seed_link.removeprefix("/portal/")
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (altered, "not-a-link", token + "x"):
        answer = httpx.get(f"{stack.console.url}/portal/{bad}")
        assert answer.status_code == 403 and "INV-SEED-1" not in answer.text
    expired, _, _ = PortalLinks(SECRET).issue("C-SEED", 1, now=datetime.now(UTC) - timedelta(days=2))
    answer = httpx.get(f"{stack.console.url}/portal/{expired}")
    assert answer.status_code == 403 and "expired" in answer.text
    foreign, _, _ = PortalLinks("another-secret-of-enough-length-0123456789").issue("C-SEED", 1)
    assert httpx.get(f"{stack.console.url}/portal/{foreign}").status_code == 403
    settings = console_settings(stack.stack, portal_links_not_before=datetime.now(UTC))
    with ConsoleServer(settings) as later:
        answer = httpx.get(later.url + seed_link)
        assert answer.status_code == 403 and "withdrawn" in answer.text
    # one link revoked by its id, another of the same customer still good
    revoked, kept = issue_link(stack, "C-SEED").json(), issue_link(stack, "C-SEED").json()
    settings = console_settings(stack.stack, portal_revoked_links=f"other-id, {revoked['link_id']}")
    with ConsoleServer(settings) as later:
        for link, status in ((revoked, 403), (kept, 200)):
            path = link["url"].removeprefix(stack.settings.public_url)
            assert httpx.get(later.url + path).status_code == status


def test_a_dispute_from_the_portal_reaches_the_ledger_once(stack: ConsoleStack, seed_link: str) -> None:
    base = stack.console.url + seed_link
    page = httpx.get(base).text
    form_id = re.search(r'name="form_id" value="([^"]+-1)"', page).group(1)
    data = {"csrf_token": portal_csrf(page), "form_id": form_id, "invoice_id": "INV-SEED-1",
            "amount": "50.00", "reason": "two items arrived broken"}
    for _ in range(2):  # the same form sent twice counts once
        answer = httpx.post(f"{base}/disputes", data=data)
        assert answer.status_code == 303 and answer.headers["location"].endswith("done=dispute")
    invoice = wait_until(lambda: stack.api("ledger", "/invoices/INV-SEED-1").json(),
                         lambda body: body["disputed_amount"] == "150.00",
                         what="the portal's dispute applied")
    assert invoice["disputed_amount"] == "150.00"
    history = stack.api("ledger", "/audit/invoices/INV-SEED-1").json()
    assert any("receivables/portal" in json.dumps(entry) for entry in history.get("events", history))
    refused = httpx.post(f"{base}/disputes", data=data | {"csrf_token": "forged"})
    assert refused.status_code == 403


def test_promise_and_plan_from_the_portal_reach_dunning(stack: ConsoleStack) -> None:
    link = issue_link(stack, OTHER).json()["url"].removeprefix(stack.settings.public_url)
    base = stack.console.url + link
    page = httpx.get(base).text
    csrf = portal_csrf(page)
    promised = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    answer = httpx.post(f"{base}/promises", data={"csrf_token": csrf, "promised_date": promised,
                                                  "amount": "300.00", "currency": "EUR"})
    assert answer.status_code == 303, answer.text
    promises = stack.api("dunning", f"/customers/{OTHER}/dunning").json()["promises"]
    assert [(p["amount"], p["promised_date"]) for p in promises] == [("300.00", promised)]
    form_id = re.search(r'name="form_id" value="([0-9a-f]+)"', page).group(1)
    answer = httpx.post(f"{base}/plans", data={"csrf_token": csrf, "form_id": form_id, "currency": "EUR",
                                               "instalments": "3", "first_due_date": promised,
                                               "reason": "a slow quarter"})
    assert answer.status_code == 303, answer.text
    plan = stack.api("dunning", f"/payment-plans/PORTAL-{form_id}").json()
    assert plan["status"] == "requested" and [i["amount"] for i in plan["instalments"]] == [
        "333.00", "333.00", "333.00"]
    bad = httpx.post(f"{base}/promises", data={"csrf_token": csrf, "promised_date": promised, "amount": "-1"})
    assert bad.status_code == 422 and "amount" in bad.text


def test_the_statement_downloads_as_a_pdf(stack: ConsoleStack, seed_link: str) -> None:
    answer = httpx.get(f"{stack.console.url}{seed_link}/statement.pdf")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-") and b"attachment" in answer.headers[
        "content-disposition"].encode()


def test_the_statement_pdf_in_chinese_reads_back_with_the_ledgers_figures(stack: ConsoleStack,
                                                                         seed_link: str) -> None:
    answer = httpx.get(f"{stack.console.url}{seed_link}/statement.pdf", headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(answer.content)).pages)
    today = datetime.now(UTC).date()
    ledger = stack.api("ledger", f"/customers/{stack.stack.seeded.customer_id}/statement",
                       **{"from": (today - timedelta(days=90)).isoformat(), "to": today.isoformat()}).json()
    assert "：对账单" in text and f"客户 {stack.stack.seeded.customer_id}，" in text
    assert f"{today.year}年{today.month}月{today.day}日" in text
    for block in ledger["currencies"]:
        assert f"期初余额：{money(block['opening_balance'], block['currency'], 'zh')}" in text
        assert f"期末余额：{money(block['closing_balance'], block['currency'], 'zh')}" in text


def test_the_pay_page_gives_the_rf_reference_of_the_invoice(stack: ConsoleStack, seed_link: str) -> None:
    page = httpx.get(f"{stack.console.url}{seed_link}/pay/INV-SEED-1")
    assert page.status_code == 200
    reference = re.search(r'id="reference" data-value="([^"]+)"', page.text).group(1)
    assert reference == rf_reference("INV-SEED-1") == "RF37Z9WE33EQAWEAO4H3MFETL"
    assert '<svg' in page.text and stack.settings.creditor_iban in page.text


def _sign(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Receivables-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def test_a_provider_payment_pays_the_invoice_once_and_a_bad_signature_publishes_nothing(
    stack: ConsoleStack,
) -> None:
    url = f"{stack.console.url}/payments/webhook/acmepay"
    bad = json.dumps({"id": "evil-1", "customer_id": PAYER, "currency": "EUR", "amount": "1000.00",
                      "received_date": "2024-03-10", "invoice_ids": [PAYER_INVOICE]}).encode()
    assert httpx.post(url, content=bad).status_code == 401
    assert httpx.post(url, content=bad, headers=_sign(bad, "wrong-secret")).status_code == 401
    assert httpx.post(url, content=bad, headers=_sign(bad[:-1] + b" ")).status_code == 401
    good = json.dumps({"id": "acme-77", "customer_id": PAYER, "currency": "EUR", "amount": "400.00",
                       "received_date": "2024-03-10", "reference": rf_reference(PAYER_INVOICE)}).encode()
    for _ in range(3):
        answer = httpx.post(url, content=good, headers=_sign(good))
        assert answer.status_code == 202, answer.text
        assert answer.json()["allocations"] == [{"invoice_id": PAYER_INVOICE, "amount": "400.00"}]
    # a later payment of the same customer (same partition, so applied after the three):
    # had a resend counted, the invoice would be paid further than 400 + 100
    later = json.dumps({"id": "acme-78", "customer_id": PAYER, "currency": "EUR", "amount": "100.00",
                        "received_date": "2024-03-11", "invoice_ids": [PAYER_INVOICE]}).encode()
    assert httpx.post(url, content=later, headers=_sign(later)).status_code == 202
    invoice = wait_until(lambda: stack.api("ledger", f"/invoices/{PAYER_INVOICE}").json(),
                         lambda body: body["open_amount"] not in ("1000.00", "600.00"),
                         what="both provider payments applied")
    assert invoice["open_amount"] == "500.00"
    (balance,) = stack.api("ledger", f"/customers/{PAYER}/balance", as_of="2024-03-31").json()["balances"]
    assert balance["unapplied_cash"] == "0.00"
    events = topic_records(stack.stack, "ar.payments",
                           lambda events: any(event["id"] == "acme-78" for event in events))
    assert not any(event["id"] == "evil-1" for event in events)
    paid = [event for event in events if event["id"] == "acme-77"]
    assert paid and paid[0]["source"] == "receivables/portal/acmepay"
    assert paid[0]["type"] == "payment.received"


def test_a_signed_but_invalid_notification_names_the_field(stack: ConsoleStack) -> None:
    body = json.dumps({"id": "acme-x", "customer_id": PAYER, "currency": "EUR", "amount": "ten",
                       "received_date": "2024-03-10"}).encode()
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=body, headers=_sign(body))
    assert answer.status_code == 422 and "body.amount" in answer.json()["detail"]


def test_the_balance_of_a_statement_is_disputed_from_the_portal(stack: ConsoleStack) -> None:
    run = httpx.post(f"{stack.stack.urls['dunning']}/statement-runs", json={"as_of": "2024-03-31"},
                     headers=stack.stack.headers())
    assert run.status_code == 200, run.text
    link = issue_link(stack, PAYER).json()["url"].removeprefix(stack.settings.public_url)
    page = httpx.get(stack.console.url + link)
    statement_id = re.search(r'<option value="([^"]+)">', page.text[page.text.index('id="cstmt"'):]).group(1)
    answer = httpx.post(f"{stack.console.url}{link}/confirmations", data={
        "csrf_token": portal_csrf(page.text), "statement_id": statement_id, "response": "disputed",
        "balance": "400.00", "note": "we paid 600 already"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=confirmed"), answer.text
    timeline = stack.api("dunning", f"/customers/{PAYER}/timeline").json()
    assert any("disput" in entry["kind"] for entry in timeline), timeline
    other = stack.api("dunning", f"/customers/{OTHER}/statements").json()["statements"]
    assert other, "the run made a statement for the other customer too"
    refused = httpx.post(f"{stack.console.url}{link}/confirmations", data={
        "csrf_token": portal_csrf(page.text), "statement_id": other[0]["statement_id"],
        "response": "confirmed"})
    assert refused.status_code == 404  # another customer's statement cannot be answered


def test_a_portal_whose_own_token_is_refused_tells_the_customer_nothing_of_tokens(stack: ConsoleStack,
                                                                                   seed_link: str) -> None:
    settings = console_settings(stack.stack, console_token="not-a-known-token")
    with ConsoleServer(settings) as misconfigured:
        page = httpx.get(misconfigured.url + seed_link)
        assert page.status_code == 200
        assert "cannot be shown right now" in page.text and "token" not in page.text.lower()


def test_a_notification_with_an_impossible_date_is_refused_naming_it(stack: ConsoleStack) -> None:
    body = json.dumps({"id": "acme-y", "customer_id": PAYER, "currency": "EUR", "amount": "1.00",
                       "received_date": "2024-13-45"}).encode()
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=body, headers=_sign(body))
    assert answer.status_code == 422 and "body.received_date" in answer.json()["detail"]


def test_one_signed_notification_posted_under_three_provider_names_pays_once(stack: ConsoleStack) -> None:
    # The signature covers the body, not the path: a replay under another name is the same payment.
    customer, invoice = "C-REPLAY", "INV-REPLAY-1"
    publish(stack.stack, [invoice_issued(customer, invoice, "300.00", issue="2024-02-01", due="2024-03-02")])
    wait_until(lambda: stack.api("ledger", f"/invoices/{invoice}").status_code, lambda status: status == 200,
               what=f"the ledger has {invoice}")
    body = json.dumps({"id": "replay-1", "customer_id": customer, "currency": "EUR", "amount": "100.00",
                       "received_date": "2024-03-10", "invoice_ids": [invoice]}).encode()
    for provider in ("bank", "bank2", "x"):
        answer = httpx.post(f"{stack.console.url}/payments/webhook/{provider}", content=body,
                            headers=_sign(body))
        assert answer.status_code == 202, answer.text
    # a later payment of the same customer (same partition): applied after the three replays
    later = json.dumps({"id": "replay-2", "customer_id": customer, "currency": "EUR", "amount": "50.00",
                        "received_date": "2024-03-11", "invoice_ids": [invoice]}).encode()
    assert httpx.post(f"{stack.console.url}/payments/webhook/bank", content=later,
                      headers=_sign(later)).status_code == 202
    found = wait_until(lambda: stack.api("ledger", f"/invoices/{invoice}").json(),
                       lambda found: found["open_amount"] not in ("300.00", "200.00"),
                       what="both payments applied")
    assert found["open_amount"] == "150.00"
    (balance,) = stack.api("ledger", f"/customers/{customer}/balance", as_of="2024-03-31").json()["balances"]
    assert balance["unapplied_cash"] == "0.00"
    events = topic_records(stack.stack, "ar.payments",
                           lambda events: any(event["id"] == "replay-2" for event in events))
    replays = {event["data"]["payment_id"] for event in events if event["id"] == "replay-1"}
    assert replays == {"portal-replay-1"}


def test_a_signature_or_form_token_that_is_not_ascii_is_refused_not_an_error(stack: ConsoleStack,
                                                                             seed_link: str) -> None:
    body = json.dumps({"id": "accent-1", "customer_id": PAYER, "currency": "EUR", "amount": "1.00",
                       "received_date": "2024-03-10"}).encode()
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=body,
                        headers={b"X-Receivables-Signature": "sha256=é".encode()})
    assert answer.status_code == 401, answer.text
    answer = httpx.post(f"{stack.console.url}{seed_link}/disputes", data={
        "csrf_token": "é", "invoice_id": "INV-SEED-1", "reason": "should not happen"})
    assert answer.status_code == 403, answer.text
    events = topic_records(stack.stack, "ar.payments", lambda events: True)
    assert not any(event["id"] == "accent-1" for event in events)


def test_an_invoice_repeated_in_a_notification_is_paid_its_open_amount_once(stack: ConsoleStack) -> None:
    customer, invoice = "C-REPEAT", "INV-REPEAT-1"
    publish(stack.stack, [invoice_issued(customer, invoice, "100.00", issue="2024-02-01", due="2024-03-02")])
    wait_until(lambda: stack.api("ledger", f"/invoices/{invoice}").status_code, lambda status: status == 200,
               what=f"the ledger has {invoice}")
    body = json.dumps({"id": "repeat-1", "customer_id": customer, "currency": "EUR", "amount": "300.00",
                       "received_date": "2024-03-10", "invoice_ids": [invoice] * 3}).encode()
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=body, headers=_sign(body))
    assert answer.status_code == 202, answer.text
    assert answer.json()["allocations"] == [{"invoice_id": invoice, "amount": "100.00"}]


def test_a_pay_page_no_qr_code_can_carry_shows_the_transfer_as_text(stack: ConsoleStack) -> None:
    customer, invoice = "C-HUGE", "INV-HUGE-1"
    publish(stack.stack, [invoice_issued(customer, invoice, "1000000000.00", issue="2024-02-01",
                                         due="2024-03-02")])
    wait_until(lambda: stack.api("ledger", f"/invoices/{invoice}").status_code, lambda status: status == 200,
               what=f"the ledger has {invoice}")
    link = issue_link(stack, customer).json()["url"].removeprefix(stack.settings.public_url)
    page = httpx.get(f"{stack.console.url}{link}/pay/{invoice}")
    assert page.status_code == 200, page.text
    assert 'id="no-qr"' in page.text and "<svg" not in page.text
    assert stack.settings.creditor_iban in page.text and rf_reference(invoice) in page.text


@pytest.mark.parametrize(("field", "change"), [
    ("amount", {"amount": 10}), ("amount", {"amount": "1000000000000.00"}), ("amount", {"amount": "1.001"}),
    ("amount", {"amount": "1e3"}), ("currency", {"currency": "ABC"}), ("invoice_ids", {"invoice_ids": [""]}),
    ("received_date", {"received_date": "1800-01-01"}),
])
def test_a_notification_the_ledger_would_refuse_is_refused_naming_the_field(stack: ConsoleStack, field: str,
                                                                            change: dict[str, Any]) -> None:
    body = json.dumps({"id": "bounds-1", "customer_id": PAYER, "currency": "EUR", "amount": "1.00",
                       "received_date": "2024-03-10"} | change).encode()
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=body, headers=_sign(body))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert f"body.{field}" in answer.json()["detail"]


def test_a_notification_said_to_be_too_large_is_refused_before_its_body_is_read(stack: ConsoleStack) -> None:
    url = httpx.URL(stack.console.url)
    with socket.create_connection((url.host, url.port), timeout=5) as connection:
        connection.sendall(b"POST /payments/webhook/acmepay HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{")
        first = connection.recv(200)  # (times out, failing, if the server waits for the 100 MB)
    assert first.startswith(b"HTTP/1.1 413"), first
    too_large = b"{" + b" " * (64 * 1024) + b"}"
    answer = httpx.post(f"{stack.console.url}/payments/webhook/acmepay", content=too_large,
                        headers=_sign(too_large))
    assert answer.status_code == 413


@pytest.mark.parametrize("form_id", ["x" * 40, "../../INV-SEED-1", "0123456789abcdef-1/x",
                                     "ABCDEF0123456789"])
def test_a_form_id_the_page_did_not_draw_is_refused(stack: ConsoleStack, seed_link: str,
                                                    form_id: str) -> None:
    base = stack.console.url + seed_link
    page = httpx.get(base).text
    for path, fields in (("disputes", {"invoice_id": "INV-SEED-1", "amount": "1.00", "reason": "why"}),
                         ("plans", {"instalments": "3", "first_due_date": "2030-01-01", "currency": "EUR"})):
        data = {"csrf_token": portal_csrf(page), "form_id": form_id} | fields
        answer = httpx.post(f"{base}/{path}", data=data)
        assert answer.status_code == 422, (path, answer.status_code)
        assert "did not come from your portal page" in answer.text, path
    events = topic_records(stack.stack, "ar.disputes", lambda events: True)
    assert not any(form_id in json.dumps(event) for event in events)


def test_a_dispute_that_cannot_be_sent_for_now_is_a_503_that_says_to_try_again(stack: ConsoleStack,
                                                                               seed_link: str) -> None:
    settings = console_settings(stack.stack, kafka_bootstrap="127.0.0.1:9")  # no broker there
    with ConsoleServer(settings) as broker_away:
        page = httpx.get(broker_away.url + seed_link).text
        found = re.search(r'name="form_id" value="([^"]+-1)"', page)
        assert found
        form_id = found.group(1)
        answer = httpx.post(f"{broker_away.url}{seed_link}/disputes", timeout=60, data={
            "csrf_token": portal_csrf(page), "form_id": form_id, "invoice_id": "INV-SEED-1", "amount": "1.00",
            "reason": "broken"})
    assert answer.status_code == 503, answer.status_code
    assert "please try again" in answer.text


def test_with_a_list_of_providers_a_notification_under_another_name_is_refused(stack: ConsoleStack) -> None:
    body = json.dumps({"id": "listed-1", "customer_id": PAYER, "currency": "EUR", "amount": "1.00",
                       "received_date": "2024-03-10"}).encode()
    with ConsoleServer(console_settings(stack.stack, payment_providers="bank, acmepay")) as listed:
        answer = httpx.post(f"{listed.url}/payments/webhook/x", content=body, headers=_sign(body))
        assert answer.status_code == 404 and "path.provider" in answer.json()["detail"]
        answer = httpx.post(f"{listed.url}/payments/webhook/bank", content=body, headers=_sign(body))
        assert answer.status_code == 202, answer.text
