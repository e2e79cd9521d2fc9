"""Every REST operation of every service refuses a request without a token (401) and one
whose token lacks the operation's scope (403), as the contract's scopes say; the
operations endpoints (health, metrics, OpenAPI) stay open.

The services run for real (lifespan, embedded broker, SQLite); the routes are taken from
the apps themselves, so a route added without a scope check fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.broker import EmbeddedBroker
from shared.settings import ServiceSettings
from tests.integration.ledger_harness import SESSION_TIMEOUT_MS, InProcessApp

OPEN = {"/health/live", "/health/ready", "/metrics"}
# A scope no service route asks for: a valid token that may do nothing.
OUTSIDER_SCOPES = {"ledger": ["dunning:read"], "dunning": ["ledger:read"], "credit": ["ledger:read"]}


def _app(service: str, settings: ServiceSettings) -> object:
    if service == "ledger":
        from services.ledger.service import create_app as ledger

        return ledger(settings)
    if service == "dunning":
        from services.dunning.service import create_app as dunning
        from services.dunning.settings import DunningSettings

        values = settings.model_dump(exclude={"service_name"})
        return dunning(DunningSettings.for_service("dunning", **values))
    from services.credit.service import create_app as credit
    from services.credit.settings import CreditSettings

    return credit(CreditSettings.for_service("credit", **settings.model_dump(exclude={"service_name"})))


@pytest.mark.parametrize("service", ["ledger", "dunning", "credit"])
async def test_every_operation_needs_a_token_with_its_scope(
    service: str, kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"outsider-token": OUTSIDER_SCOPES[service]}))
    settings = ServiceSettings.for_service(
        service, kafka_bootstrap=kafka_broker.bootstrap, database_url=f"sqlite:///{tmp_path / service}.db",
        api_tokens_file=tokens, session_timeout_ms=SESSION_TIMEOUT_MS,
        consumer_group=f"scopes-{service}-{tmp_path.name}",
    )
    async with InProcessApp(_app(service, settings)) as server:
        schema = (await server.http.get("/openapi.json")).json()
        operations = [(method.upper(), path) for path, item in schema["paths"].items() if path not in OPEN
                      for method in item if method in {"get", "post", "put", "patch", "delete"}]
        assert len(operations) >= 4, operations
        for method, route in operations:
            path = re.sub(r"\{[^}]+\}", "X-1", route)
            anonymous = await server.http.request(method, path, json={})
            assert anonymous.status_code == 401, (method, route, anonymous.status_code)
            assert anonymous.headers["content-type"].startswith("application/problem+json")
            outsider = await server.http.request(method, path, json={},
                                                 headers={"Authorization": "Bearer outsider-token"})
            assert outsider.status_code == 403, (method, route, outsider.status_code, outsider.text)
        for path in OPEN - {"/health/ready"}:
            assert (await server.http.get(path)).status_code == 200
