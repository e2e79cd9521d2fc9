"""The console's parts without I/O: settings, RF references, links, sessions, signatures, sums."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from stdnum import iso11649

from services.cli import main
from services.console.formatting import language_of, money
from services.console.payment_reference import epc_qr_svg, invoice_of, rf_reference
from services.console.portal import amount_of, split
from services.console.portal_links import LinkRefused, PortalLinks
from services.console.service import create_app
from services.console.sessions import Sessions
from services.console.settings import ConsoleSettings
from services.console.web import TEMPLATES, Refused
from services.console.webhook import signature_ok
from shared.tokens import TokenRegistry

SECRET = "x" * 40


def test_the_console_refuses_to_start_without_a_long_enough_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECEIVABLES_CONSOLE_SECRET", raising=False)
    with pytest.raises(ValidationError, match="RECEIVABLES_CONSOLE_SECRET is required"):
        ConsoleSettings()
    with pytest.raises(ValidationError, match="at least 32"):
        ConsoleSettings(console_secret="short")
    with pytest.raises(ValidationError, match="can only be disabled under `receivables dev`"):
        ConsoleSettings(console_secret=SECRET, auth="disabled")
    assert main(["serve", "console", "--port", "1"]) == 2


@pytest.mark.parametrize("invoice_id", ["INV-SEED-1", "inv 2024/0001", "Ü-7", "A" * 30, "ZED-1", "-"])
def test_rf_references_are_valid_and_name_their_invoice(invoice_id: str) -> None:
    reference = rf_reference(invoice_id)
    assert iso11649.is_valid(reference) and len(reference) <= 25
    assert invoice_of(reference, ["OTHER", invoice_id, "MORE"]) == invoice_id
    assert invoice_of(reference, ["OTHER"]) is None
    assert invoice_of("RF00NOTVALID", [invoice_id]) is None


def test_rf_references_of_ids_alike_but_for_case_or_punctuation_differ() -> None:
    ids = ["INV-1", "inv1", "INV1", "Inv-1", "INV 1"]
    assert len({rf_reference(invoice_id) for invoice_id in ids}) == len(ids)
    assert rf_reference("INV1") == "RF47INV1"  # an id that is already a reference's body stays readable
    for invoice_id in ids:
        assert invoice_of(rf_reference(invoice_id), ids) == invoice_id


def test_a_reference_that_two_open_invoices_share_names_neither() -> None:
    reference = rf_reference("INV-1")
    assert invoice_of(reference, ["INV-1", "OTHER"]) == "INV-1"
    with patch("services.console.payment_reference.rf_reference", lambda invoice_id: reference):
        assert invoice_of(reference, ["INV-1", "INV-2"]) is None


def test_the_rf_reference_of_the_standards_example() -> None:
    assert rf_reference("539007547034") == "RF18539007547034"


def test_a_naive_not_before_of_portal_links_is_read_as_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVABLES_PORTAL_LINKS_NOT_BEFORE", "2024-05-01T12:00:00")
    settings = ConsoleSettings(console_secret=SECRET)
    assert settings.portal_links_not_before == datetime(2024, 5, 1, 12, tzinfo=UTC)
    links = PortalLinks(SECRET, not_before=settings.portal_links_not_before)
    token, _, _ = links.issue("C-1", 3)
    assert links.verify(token).customer_id == "C-1"


def test_portal_links_expire_and_are_bound_to_their_secret() -> None:
    links = PortalLinks(SECRET)
    token, expires_at, link_id = links.issue("C-1", 3)
    assert links.verify(token).customer_id == "C-1"
    with pytest.raises(LinkRefused, match="withdrawn"):
        PortalLinks(SECRET, revoked=frozenset({link_id})).verify(token)
    with pytest.raises(LinkRefused, match="expired"):
        links.verify(token, now=expires_at + timedelta(seconds=1))
    with pytest.raises(LinkRefused, match="not valid"):
        PortalLinks("y" * 40).verify(token)
    with pytest.raises(LinkRefused, match="withdrawn"):
        PortalLinks(SECRET, not_before=datetime.now(UTC) + timedelta(seconds=5)).verify(token)


def test_a_session_cookie_hides_the_token_and_refuses_alteration() -> None:
    sessions = Sessions(SECRET, TokenRegistry.from_mapping({"tok-1": ["ledger:read"]}), 3600)
    cookie = sessions.issue("tok-1")
    assert "tok-1" not in cookie
    session = sessions.read(cookie)
    assert session is not None and session.can("ledger:read") and not session.can("credit:override")
    assert sessions.read(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None
    assert Sessions("z" * 40, sessions.registry, 3600).read(cookie) is None
    assert sessions.csrf_ok(session, sessions.csrf_token(session.session_id))
    assert not sessions.csrf_ok(session, "forged") and not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(session, "é") and not sessions.csrf_ok(session, "\udcff")


def test_webhook_signatures() -> None:
    body = b'{"id": "1"}'
    good = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert signature_ok("secret", body, good)
    assert not signature_ok("secret", body + b" ", good)
    assert not signature_ok("secret", body, None) and not signature_ok(None, body, good)
    assert not signature_ok("secret", body, good.removeprefix("sha256="))
    assert not signature_ok("secret", body, "sha256=é") and not signature_ok("secret", body, "sha256=\udcff")


@pytest.mark.parametrize(("total", "count", "currency", "digits"), [
    ("1000.00", 3, "EUR", 2), ("0.05", 2, "EUR", 2), ("999.99", 12, "EUR", 2), ("10000", 3, "JPY", 0),
    ("100.000", 3, "KWD", 3),
])
def test_instalments_add_up_to_the_currencys_minor_unit(total: str, count: int, currency: str,
                                                        digits: int) -> None:
    parts = split(Decimal(total), count, currency)
    assert len(parts) == count and sum(parts) == Decimal(total)
    assert all(part.as_tuple().exponent >= -digits for part in parts)


def test_yen_instalments_are_whole_yen() -> None:
    assert split(Decimal("10000"), 3, "JPY") == [Decimal(3333), Decimal(3333), Decimal(3334)]


def test_money_and_language_per_locale() -> None:
    assert money("1500.00", "EUR", "en") == "€1,500.00"
    assert money("1500.00", "CNY", "zh") == "¥1,500.00"
    assert money(None, "EUR", "en") == "—"
    assert language_of("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language_of("fr-FR, en;q=0.5") == "en"
    assert language_of("zh-CN", chosen="en") == "en"


def test_every_message_of_the_console_has_its_chinese_translation_with_the_same_placeholders() -> None:
    import re
    from importlib.resources import files

    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = files("services.console")
    wanted = {message for _, _, message, _, _ in extract_from_dir(
        str(root), method_map=[("**.py", "python"), ("**.html", "jinja2")],
        options_map={"**.html": {"extensions": "jinja2.ext.i18n"}}) if isinstance(message, str)}
    with (root / "locale" / "zh_Hans" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source)
    translated = {message.id: message.string for message in catalog if message.id}
    missing = wanted - set(translated)
    assert not missing, f"not in the catalogue (pybabel extract, then update): {missing}"
    placeholders = re.compile(r"%\([a-z_]+\)[sr]|%%")
    for english, chinese in translated.items():
        assert chinese, f"no translation of {english!r}"
        assert sorted(placeholders.findall(english)) == sorted(placeholders.findall(chinese)), english


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_at_its_lifetime_and_when_signed_out() -> None:
    clock = Clock()
    registry = TokenRegistry.from_mapping({"tok-1": ["ledger:read"]})
    sessions = Sessions(SECRET, registry, 12 * 3600, idle_seconds=30 * 60, now=clock)
    cookie = sessions.issue("tok-1")
    clock.now += 29 * 60
    session = sessions.read(cookie)
    assert session is not None and sessions.renewal(session) is not None
    clock.now += 2 * 60
    assert sessions.read(cookie) is None  # idle for 31 minutes

    cookie = sessions.issue("tok-1")
    started = sessions.read(cookie)
    assert started is not None and sessions.renewal(started) is None  # not due yet: no new cookie
    for _ in range(12 * 3):  # used every 20 minutes, renewed each time: alive until 12 h from sign-in
        clock.now += 20 * 60
        session = sessions.read(cookie)
        assert session is not None and session.session_id == started.session_id
        cookie = sessions.renewal(session) or cookie
        assert sessions.remaining(session) == started.started + 12 * 3600 - int(clock.now)
    clock.now += 60
    assert sessions.read(cookie) is None  # 12 h 1 min after sign-in

    cookie = sessions.issue("tok-1")
    copied = cookie
    session = sessions.read(cookie)
    assert session is not None
    sessions.revoke(session)
    assert sessions.read(copied) is None  # the copy is refused at once
    other_replica = Sessions(SECRET, registry, 12 * 3600, idle_seconds=30 * 60, now=clock)
    assert other_replica.read(copied) is not None  # per process: another replica until idle
    clock.now += 31 * 60
    assert other_replica.read(copied) is None


async def test_a_session_in_use_gets_a_fresh_cookie_that_starts_its_idle_time_again() -> None:
    import httpx

    from services.console.service import create_app
    from services.console.sessions import COOKIE_NAME

    clock = Clock()
    app = create_app(ConsoleSettings(console_secret=SECRET))
    sessions = Sessions(SECRET, TokenRegistry.from_mapping({"tok-1": ["ledger:read"]}), 12 * 3600,
                        idle_seconds=30 * 60, now=clock)
    app.state.sessions = sessions
    cookie = sessions.issue("tok-1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        # (no lifespan: these routes need no service)
        client.cookies.set(COOKIE_NAME, cookie)
        assert COOKIE_NAME not in (await client.get("/health/live")).headers.get("set-cookie", "")  # not due
        clock.now += 10 * 60
        renewed = (await client.get("/health/live")).headers["set-cookie"]
    assert renewed.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in renewed and "Max-Age=42600" in renewed
    fresh = renewed.split(";")[0].removeprefix(f"{COOKIE_NAME}=").strip('"')
    clock.now += 25 * 60  # 35 minutes after sign-in, 25 after the renewal
    assert sessions.read(cookie) is None and sessions.read(fresh) is not None


@pytest.mark.parametrize("kind", ["<b>hi</b>", "<b>50% off</b>"])
def test_a_services_word_on_a_page_is_escaped_and_never_formatted(kind: str) -> None:
    # a hold kind (what the credit service answers) with markup and a per cent sign
    hold = {"hold_id": "H-1", "customer_id": "C-1", "kind": kind, "reasons": [], "placed_by": "x"}
    page = TEMPLATES.get_template("holds.html").render(
        holds=[hold], can=lambda scope: False, lang="en", languages={"en": "English"}, troubles=[],
        request=SimpleNamespace(url=SimpleNamespace(path="/holds")), money=str, day=str, number=str)
    assert kind.replace("<", "&lt;").replace(">", "&gt;") in page and "<b>" not in page


def test_templates_translate_only_literal_messages_with_underscore() -> None:
    # `_()` on a variable is Markup (unescaped) and %-formatted: variables go through `word()`.
    root = Path(TEMPLATES.loader.searchpath[0])  # type: ignore[union-attr]
    calls = {path.name: re.findall(r"\b_\((?!['\"])[^)]*\)", path.read_text(encoding="utf-8"))
             for path in root.rglob("*.html")}
    assert not {name: found for name, found in calls.items() if found}


@pytest.mark.parametrize(("name", "bic", "amount"), [
    ("Creditor", "COBADEFFXXX", "1000000000.00"), ("Creditor", None, "0.001"), ("Creditor", None, "0.00"),
    ("C" * 71, None, "10.00"), ("Creditor", "COBADE", "10.00"),
])
def test_a_transfer_an_epc_qr_code_cannot_carry_has_none(name: str, bic: str | None, amount: str) -> None:
    assert epc_qr_svg(name, "DE89370400440532013000", bic, Decimal(amount), "RF47INV1") is None
    assert epc_qr_svg("Creditor", "DE89370400440532013000", "COBADEFFXXX", Decimal("999999999.99"),
                      "RF47INV1")


@pytest.mark.parametrize(("typed", "read"), [
    ("1,000", "1000"), ("1,000.50", "1000.50"), ("250.00", "250.00"), (" 0.5 ", "0.5"),
    ("1.000", None), ("1,5", None), ("250,00", None), ("12.345,67", None), ("1e3", None), ("NaN", None),
])
def test_a_typed_amount_is_read_as_the_page_writes_numbers(typed: str, read: str | None) -> None:
    for language in ("en", "zh"):
        if read is not None:
            assert amount_of("amount", typed, language) == Decimal(read)
        else:
            with pytest.raises(Refused, match=r"^amount: "):
                amount_of("amount", typed, language)


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        return await client.get(path)


def test_portal_links_stay_out_of_the_access_and_error_logs(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ConsoleSettings(console_secret=SECRET))
    token, _, link_id = app.state.portal_links.issue("C-1", 3)

    @app.get("/portal/{link}/boom")
    async def boom(link: str) -> None:
        raise RuntimeError("boom")

    access = logging.getLogger("uvicorn.access")
    # (uvicorn's own logging config, once a server ran in this process, stops its access log from
    # reaching the root logger caplog listens on: listen on it directly)
    access.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="uvicorn.access"):
            # as uvicorn writes a request line
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/portal/{token}/pay/INV-1?x=1",
                        "1.1", 200)
            answer = asyncio.run(_get(app, f"/portal/{token}/boom"))
    finally:
        access.removeHandler(caplog.handler)
    assert answer.status_code == 500
    # (the test's own HTTP client logs its URLs too: only the server's logs are looked at)
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if not record.name.startswith("httpx"))
    assert token not in logged
    assert '"GET /portal/<link>/pay/INV-1?x=1 HTTP/1.1" 200' in logged
    assert f"/portal/<link {link_id}>/boom" in logged
