"""Helpers for driving the credit service through the real broker, fed by the real ledger.

- ``ALL_TOPICS``: the ledger's topics plus ``ar.credit.events`` (4 partitions);
- :class:`InProcessCredit`: the credit app under uvicorn in the test's event loop, with a
  bearer token per role (``reader``, ``checker``, ``writer``, ``overrider``);
- :func:`credit_settings_for`: settings for a test, with the credit event store in a SQLite
  file of its own (the library names SQLite tables the same for every app) or in the
  ledger's PostgreSQL database (there its tables are ``credit_*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from services.credit.settings import CreditSettings
from tests.integration.feed_harness import found, service_database_url
from tests.integration.ledger_harness import PARTITIONS, SESSION_TIMEOUT_MS, TOPICS, InProcessApp, poll

CREDIT_TOPIC = "ar.credit.events"
ALL_TOPICS = {**TOPICS, CREDIT_TOPIC: PARTITIONS, "ar.ratings": PARTITIONS}
WAIT = 30.0

# role -> (token, scopes); the token's name is the identity audit records show
ROLES = {
    "reader": ["credit:read"],
    "checker": ["credit:check"],
    "writer": ["credit:write", "credit:read"],
    "overrider": ["credit:override"],
}


def write_tokens(directory: Path) -> Path:
    path = directory / "tokens.json"
    path.write_text(json.dumps({f"token-{role}": {"name": role, "scopes": scopes}
                                for role, scopes in ROLES.items()}))
    return path


def credit_settings_for(bootstrap: str, database_url: str, tokens: Path, **overrides: Any) -> CreditSettings:
    return CreditSettings.for_service(
        "credit", kafka_bootstrap=bootstrap, database_url=service_database_url(database_url, "credit"),
        api_tokens_file=tokens, session_timeout_ms=SESSION_TIMEOUT_MS, **overrides,
    )


class InProcessCredit(InProcessApp):
    """The credit app under uvicorn in the current event loop (``async with``); requests go
    with the ``reader`` token unless ``as_`` names another role (or None: no token)."""

    name = "credit"

    def __init__(self, settings: CreditSettings) -> None:
        from services.credit.service import create_app

        super().__init__(create_app(settings))

    @staticmethod
    def _headers(role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer token-{role}"}

    async def get(self, path: str, *, as_: str | None = "reader", **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params or None, headers=self._headers(as_))

    async def post(self, path: str, body: Any, *, as_: str | None) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self._headers(as_))

    async def put(self, path: str, body: Any, *, as_: str | None) -> httpx.Response:
        return await self.http.put(path, json=body, headers=self._headers(as_))

    async def view(self, customer_id: str) -> dict[str, Any] | None:
        return found(await self.get(f"/customers/{customer_id}/credit"))

    async def wait_view(self, customer_id: str, check: Any, what: str) -> dict[str, Any]:
        view: dict[str, Any] = await poll(lambda: self.view(customer_id),
                                          lambda v: v is not None and check(v), timeout=WAIT, what=what)
        return view

    async def check(self, customer_id: str, order_id: str, amount: str, on: str,
                    currency: str = "EUR") -> dict[str, Any]:
        response = await self.post("/credit-checks", {"customer_id": customer_id, "order_id": order_id,
                                                      "amount": amount, "currency": currency, "on": on},
                                   as_="checker")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def review(self, as_of: str) -> dict[str, Any]:
        response = await self.post("/reviews", {"as_of": as_of}, as_="writer")
        assert response.status_code == 200, response.text
        return dict(response.json())
