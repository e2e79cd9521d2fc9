"""The REST plumbing every service shares: bearer-token scopes, problem+json errors, settings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from shared.auth import LedgerReader, install_auth, require_scope
from shared.errors import DomainError
from shared.problems import (
    PROBLEM_MEDIA_TYPE,
    DomainProblems,
    Problem,
    install_problem_handlers,
    not_found,
    problem_type,
)
from shared.settings import ServiceSettings
from shared.tokens import Principal, Scopes, TokenFileError, TokenRegistry

READER_TOKEN = "reader-0123456789abcdef"
WRITER_TOKEN = "writer-fedcba9876543210"
TOKENS = {
    READER_TOKEN: [Scopes.LEDGER_READ],
    WRITER_TOKEN: {"name": "erp-bridge", "scopes": [Scopes.LEDGER_READ, Scopes.LEDGER_WRITE]},
}


class CurrencyMismatch(DomainError):
    """A domain error, mapped to a problem in one place."""


class NegativeAmount(CurrencyMismatch):
    """A subclass, mapped on its own, naming its field."""


class PaymentIn(BaseModel):
    customer_id: str
    amount: str


def build_app(settings: ServiceSettings | None, *, with_auth: bool = True) -> FastAPI:
    """A tiny service wired the way the real ones are."""
    app = FastAPI()
    install_problem_handlers(app, DomainProblems(
        kinds={CurrencyMismatch: (409, "currency-mismatch"), NegativeAmount: (422, "validation-error")},
        fields={"amount": "body.amount"}))
    if with_auth and settings is not None:
        install_auth(app, settings)

    @app.get("/balance")
    async def balance(principal: LedgerReader) -> dict[str, Any]:
        return {"identity": principal.identity, "scopes": sorted(principal.scopes)}

    @app.post("/events", status_code=202, dependencies=[require_scope(Scopes.LEDGER_WRITE)])
    async def post_events() -> dict[str, str]:
        return {"status": "accepted"}

    @app.get("/invoices/{invoice_id}")
    async def invoice(invoice_id: str) -> dict[str, str]:
        raise not_found("invoice", invoice_id)

    @app.post("/payments")
    async def payments(payment: PaymentIn) -> PaymentIn:
        return payment

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(
            409,
            "already-settled",
            "Invoice already settled",
            "INV-1 was settled on 2024-01-31",
            invoice_id="INV-1",
        )

    @app.get("/mismatch")
    async def mismatch() -> None:
        raise CurrencyMismatch("payment PAY-9 is in USD, invoice INV-1 in EUR")

    @app.get("/negative")
    async def negative() -> None:
        raise NegativeAmount("amount: must not be negative, got -5", field="amount")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret connection string postgres://u:p@db")

    return app


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECEIVABLES_"):
            monkeypatch.delenv(name)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    return path


@pytest.fixture
def settings(tokens_file: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    monkeypatch.setenv("RECEIVABLES_API_TOKENS_FILE", str(tokens_file))
    return ServiceSettings.for_service("ledger")


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://ledger.test")


@pytest.fixture
async def client(settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(build_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"] == problem_type(slug)
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# --- auth -----------------------------------------------------------------------------


async def test_a_request_without_a_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/balance")

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", ["Bearer not-a-known-token", f"Basic {READER_TOKEN}", "Bearer"])
async def test_an_unknown_or_malformed_token_is_401(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.get("/balance", headers={"Authorization": authorization})

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_without_the_scope_is_403(client: httpx.AsyncClient) -> None:
    response = await client.post("/events", headers=bearer(READER_TOKEN))

    body = assert_problem(response, 403, "insufficient-scope")
    assert body["required_scope"] == "ledger:write"
    assert "ledger:write" in body["detail"]


async def test_a_token_with_the_scope_gets_through_as_its_principal(client: httpx.AsyncClient) -> None:
    response = await client.get("/balance", headers=bearer(READER_TOKEN))

    assert response.status_code == 200
    digest_prefix = hashlib.sha256(READER_TOKEN.encode()).hexdigest()[:8]
    assert response.json() == {"identity": f"token:{digest_prefix}", "scopes": ["ledger:read"]}


async def test_the_named_token_form_gives_its_name_as_identity(client: httpx.AsyncClient) -> None:
    read = await client.get("/balance", headers=bearer(WRITER_TOKEN))
    write = await client.post("/events", headers=bearer(WRITER_TOKEN))

    assert read.json()["identity"] == "erp-bridge"
    assert write.status_code == 202


async def test_disabled_auth_lets_every_request_through_as_anonymous(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RECEIVABLES_AUTH", "disabled")
    monkeypatch.setenv("RECEIVABLES_DEV_MODE", "true")
    with caplog.at_level(logging.WARNING, logger="shared.auth"):
        app = build_app(ServiceSettings.for_service("ledger"))

    async with client_for(app) as client:
        read = await client.get("/balance")
        write = await client.post("/events", headers=bearer("anything"))

    assert read.status_code == 200
    assert read.json() == {"identity": "anonymous", "scopes": sorted(Scopes.ALL)}
    assert write.status_code == 202
    assert "DISABLED" in caplog.text


async def test_auth_without_a_tokens_file_refuses_everyone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.auth"):
        app = build_app(ServiceSettings.for_service("ledger"))

    async with client_for(app) as client:
        response = await client.get("/balance", headers=bearer(READER_TOKEN))

    assert_problem(response, 401, "unauthorized")
    assert "RECEIVABLES_API_TOKENS_FILE is not set" in caplog.text


async def test_an_app_that_never_installed_auth_fails_closed(settings: ServiceSettings) -> None:
    async with client_for(build_app(settings, with_auth=False)) as client:
        response = await client.get("/balance", headers=bearer(READER_TOKEN))

    assert_problem(response, 500, "internal-error")


def test_require_scope_refuses_a_scope_the_contract_does_not_name() -> None:
    with pytest.raises(ValueError, match="ledger:reed"):
        require_scope("ledger:reed")


def test_scopes_are_the_contracts() -> None:
    contract_scopes = {
        "ledger:read", "ledger:write", "dunning:read", "dunning:write", "credit:read",
        "credit:check", "credit:write", "credit:override", "ops:replay", "dunning:approve",
        "portal:admin",
    }  # fmt: skip

    assert contract_scopes == Scopes.ALL


def test_the_registry_reads_both_token_forms() -> None:
    registry = TokenRegistry.from_mapping(TOKENS)

    assert len(registry) == 2
    assert registry.authenticate(WRITER_TOKEN) == Principal(
        "erp-bridge", frozenset({"ledger:read", "ledger:write"})
    )
    reader = registry.authenticate(READER_TOKEN)
    assert reader is not None and reader.identity.startswith("token:")
    assert registry.authenticate("nope") is None
    assert registry.authenticate(READER_TOKEN[:-1]) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["ledger:read"], "JSON object"),
        ({READER_TOKEN: "ledger:read"}, "list of strings"),
        ({READER_TOKEN: ["ledger:reed"]}, "unknown scopes"),
        ({READER_TOKEN: {"name": "x", "scope": ["ledger:read"]}}, "unexpected keys"),
        ({READER_TOKEN: {"name": "", "scopes": []}}, "'name'"),
        ({"has space": ["ledger:read"]}, "whitespace"),
    ],
)
def test_a_malformed_token_entry_is_refused_without_echoing_the_token(data: object, message: str) -> None:
    with pytest.raises(TokenFileError, match=message) as refused:
        TokenRegistry.from_mapping(data)

    assert READER_TOKEN not in str(refused.value)


# --- problems -------------------------------------------------------------------------


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/nowhere"), 404, "not-found")

    assert body["instance"] == "/nowhere"


async def test_not_found_names_the_resource(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/invoices/INV-404"), 404, "not-found")

    assert "INV-404" in body["detail"]
    assert body["resource"] == "invoice"
    assert body["resource_id"] == "INV-404"


async def test_a_wrong_method_is_a_405_problem_keeping_the_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/payments")

    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "POST"


async def test_a_validation_error_is_422_and_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/payments", json={"customer_id": "CUST-1"})

    body = assert_problem(response, 422, "validation-error")
    assert body["detail"] == "body.amount: Field required"
    assert body["errors"] == [{"field": "body.amount", "message": "Field required"}]


async def test_malformed_json_is_a_422_on_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/payments", content=b'{"customer_id": ', headers={"Content-Type": "application/json"}
    )

    body = assert_problem(response, 422, "validation-error")
    assert [error["field"] for error in body["errors"]] == ["body"]


async def test_a_raised_problem_keeps_its_type_and_extension_members(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/conflict"), 409, "already-settled")

    assert body["title"] == "Invoice already settled"
    assert body["detail"] == "INV-1 was settled on 2024-01-31"
    assert body["invoice_id"] == "INV-1"


async def test_a_mapped_domain_error_becomes_its_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/mismatch"), 409, "currency-mismatch")

    assert body["detail"] == "payment PAY-9 is in USD, invoice INV-1 in EUR"
    assert "errors" not in body  # it names no field


async def test_a_domain_error_naming_its_field_is_answered_with_the_request_field(
        client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/negative"), 422, "validation-error")

    assert body["detail"] == "body.amount: must not be negative, got -5"
    assert body["errors"] == [{"field": "body.amount", "message": "must not be negative, got -5"}]


async def test_an_unexpected_error_is_a_500_problem_that_is_logged_not_shown(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shared.problems"):
        response = await client.get("/boom")

    body = assert_problem(response, 500, "internal-error")
    assert "postgres://" not in response.text
    assert "Traceback" not in response.text
    assert body["error_id"] in caplog.text
    assert "RuntimeError" in caplog.text


def test_a_problem_may_not_override_standard_members() -> None:
    with pytest.raises(ValueError, match="instance"):
        Problem(400, "bad-request", instance="/elsewhere")


# --- settings -------------------------------------------------------------------------


def test_settings_defaults_match_the_contract() -> None:
    settings = ServiceSettings.for_service("credit")

    assert settings.service_name == "credit"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.database_url == "sqlite:///./.receivables/receivables.db"
    assert settings.auth == "enabled"
    assert settings.api_tokens_file is None


def test_a_service_database_url_overrides_the_common_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVABLES_DATABASE_URL", "postgresql+psycopg://db/common")
    monkeypatch.setenv("RECEIVABLES_LEDGER_DATABASE_URL", "postgresql+psycopg://db/ledger")
    monkeypatch.setenv("RECEIVABLES_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")

    ledger = ServiceSettings.for_service("ledger")
    dunning = ServiceSettings.for_service("dunning")

    assert ledger.database_url == "postgresql+psycopg://db/ledger"
    assert dunning.database_url == "postgresql+psycopg://db/common"
    assert ledger.kafka_bootstrap == dunning.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"


def test_explicit_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVABLES_LEDGER_DATABASE_URL", "postgresql+psycopg://db/ledger")

    settings = ServiceSettings.for_service("ledger", database_url="sqlite:///cli.db")

    assert settings.database_url == "sqlite:///cli.db"


def test_an_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError, match="ledgr"):
        ServiceSettings.for_service("ledgr")


def test_auth_cannot_be_disabled_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVABLES_AUTH", "disabled")

    with pytest.raises(ValidationError, match="only be disabled under `receivables dev`"):
        ServiceSettings.for_service("ledger")

    assert ServiceSettings.for_service("ledger", dev_mode=True).auth_enabled is False


@pytest.fixture
def bad_tokens_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    (tmp_path / "not-json.json").write_text("{ledger:read}")
    (tmp_path / "wrong-shape.json").write_text(json.dumps({"t0k3n-abc": "ledger:read"}))
    yield {
        "does not exist": tmp_path / "missing.json",
        "not valid JSON": tmp_path / "not-json.json",
        "list of strings": tmp_path / "wrong-shape.json",
    }


@pytest.mark.parametrize("problem", ["does not exist", "not valid JSON", "list of strings"])
def test_a_bad_tokens_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, bad_tokens_files: dict[str, Path], problem: str
) -> None:
    monkeypatch.setenv("RECEIVABLES_API_TOKENS_FILE", str(bad_tokens_files[problem]))

    with pytest.raises(ValidationError, match=problem):
        ServiceSettings.for_service("ledger")


# --- the store out of reach, dates ahead of the clock, the documented problems ------------


def _store_errors() -> list[Exception]:
    import eventsourcing.persistence
    import psycopg_pool
    import sqlalchemy.exc

    return [
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"),
        eventsourcing.persistence.OperationalError("server closed the connection"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
    ]


@pytest.mark.parametrize("error", _store_errors(), ids=lambda error: type(error).__qualname__)
async def test_an_unreachable_store_is_503_with_retry_after(error: Exception) -> None:
    app = build_app(None)

    @app.get("/read")
    async def read() -> None:
        raise error

    async with client_for(app) as client:
        response = await client.get("/read")

    body = assert_problem(response, 503, "store-unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert "connection" not in body["detail"]  # the driver's message stays in the log


def test_a_date_ahead_of_the_clock_is_refused_beyond_the_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta
    from types import SimpleNamespace

    from shared.business_dates import not_ahead_of_clock, today_utc

    def request(settings: object) -> Any:
        return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))

    today = today_utc()
    default = request(ServiceSettings.for_service("dunning", auth="disabled", dev_mode=True))
    assert not_ahead_of_clock(today + timedelta(days=1), "body.as_of", default) == today + timedelta(days=1)
    assert not_ahead_of_clock(today - timedelta(days=3650), "body.as_of", default)
    with pytest.raises(Problem) as refused:
        not_ahead_of_clock(today + timedelta(days=2), "body.as_of", default)
    assert (refused.value.status, refused.value.extra["errors"][0]["field"]) == (422, "body.as_of")

    monkeypatch.setenv("RECEIVABLES_FUTURE_DATE_TOLERANCE_DAYS", "0")
    strict = request(ServiceSettings.for_service("dunning", auth="disabled", dev_mode=True))
    assert not_ahead_of_clock(today, "body.as_of", strict) == today
    with pytest.raises(Problem):
        not_ahead_of_clock(today + timedelta(days=1), "body.as_of", strict)


async def test_the_openapi_document_lists_each_operations_problems(settings: ServiceSettings) -> None:
    from shared.openapi import document_problems

    app = build_app(settings)
    document_problems(app)
    async with client_for(app) as client:
        document = (await client.get("/openapi.json")).json()

    def problems(path: str, method: str) -> set[str]:
        responses = document["paths"][path][method]["responses"]
        listed = {status for status in responses if int(status) >= 400}
        assert all(list(responses[s]["content"]) == [PROBLEM_MEDIA_TYPE] for s in listed), responses
        return listed

    assert problems("/balance", "get") == {"401", "403", "503"}
    assert problems("/events", "post") == {"401", "403", "409", "503"}
    assert problems("/invoices/{invoice_id}", "get") == {"404", "422", "503"}
    assert problems("/payments", "post") == {"400", "409", "422", "503"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
