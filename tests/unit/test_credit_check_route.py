"""``POST /credit-checks`` is a plain declarative route (the ``CheckIn`` body parameter and the
``CreditChecker`` dependency), and the service answers plain checks on a lane ahead of the
framework (``CheckFastLane``): every answer the lane gives, error or not, is the one the route
gives the same request."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI

from services.credit import api
from services.credit.check_fast_lane import CheckFastLane
from services.credit.domain import CreditAccount
from services.credit.service import create_app
from services.credit.settings import credit_settings
from shared.auth import AuthState
from shared.problems import install_problem_handlers
from shared.tokens import TokenRegistry


class _Desk:
    """The check desk without the store: one in-memory account answers every check."""

    def __init__(self) -> None:
        self.account = CreditAccount("C")

    async def check(self, customer_id: str, order_id: str, amount: Decimal, currency: str,
                    on: date) -> dict[str, Any]:
        return self.account.check(order_id, amount, currency, on)


def _app(router: APIRouter, *, lane: bool = False) -> FastAPI:
    app = FastAPI()
    if lane:
        app.add_middleware(CheckFastLane)
    install_problem_handlers(app, api.CREDIT_PROBLEMS)
    app.state.auth = AuthState(True, TokenRegistry.from_mapping({"checker": ["credit:check"],
                                                                 "reader": ["credit:read"]}))
    app.state.desk = _Desk()
    app.include_router(router)
    return app


GOOD = {"customer_id": "C", "order_id": "O1", "amount": "5.00", "currency": "EUR", "on": "2025-01-02"}
JSON = "application/json"

CASES: list[tuple[str, bytes, str | None, str | None]] = [
    ("approved", json.dumps(GOOD).encode(), JSON, "Bearer checker"),
    ("repeated", json.dumps(GOOD).encode(), JSON, "Bearer checker"),
    ("conflicting", json.dumps({**GOOD, "amount": "6.00"}).encode(), JSON, "Bearer checker"),
    ("no token", json.dumps(GOOD).encode(), JSON, None),
    ("unknown token", json.dumps(GOOD).encode(), JSON, "Bearer nope"),
    ("basic scheme", json.dumps(GOOD).encode(), JSON, "Basic checker"),
    ("scheme only", json.dumps(GOOD).encode(), JSON, "Bearer"),
    ("lower-case scheme", json.dumps({**GOOD, "order_id": "O2"}).encode(), JSON, "bearer  checker "),
    ("scope missing", json.dumps(GOOD).encode(), JSON, "Bearer reader"),
    ("JSON syntax", b"{not json", JSON, "Bearer checker"),
    ("JSON syntax before the token", b"{not json", JSON, None),
    ("trailing text", json.dumps(GOOD).encode() + b" x", JSON, "Bearer checker"),
    ("not UTF-8", b'{"customer_id": "\xff"}', JSON, "Bearer checker"),
    ("empty", b"", JSON, "Bearer checker"),
    ("empty, no token", b"", JSON, None),
    ("no media type", json.dumps(GOOD).encode(), None, "Bearer checker"),
    ("text media type", json.dumps(GOOD).encode(), "text/plain", "Bearer checker"),
    ("+json media type", json.dumps({**GOOD, "order_id": "O3"}).encode(), "application/merge-patch+json",
     "Bearer checker"),
    ("charset", json.dumps({**GOOD, "order_id": "O4"}).encode(), "application/json; charset=utf-8",
     "Bearer checker"),
    ("byte order mark", "\ufeff".encode() + json.dumps({**GOOD, "order_id": "O5"}).encode(), JSON,
     "Bearer checker"),
    ("list", b"[1, 2]", JSON, "Bearer checker"),
    ("null", b"null", JSON, "Bearer checker"),
    ("amount as number", json.dumps({**GOOD, "amount": 5}).encode(), JSON, "Bearer checker"),
    ("amount NaN", b'{"customer_id": "C", "order_id": "O6", "amount": NaN, "currency": "EUR"}', JSON,
     "Bearer checker"),
    ("amount digits", json.dumps({**GOOD, "order_id": "O7", "amount": "5.001"}).encode(), JSON,
     "Bearer checker"),
    ("unknown field", json.dumps({**GOOD, "x": 1}).encode(), JSON, "Bearer checker"),
    ("fields missing", json.dumps({"customer_id": "C"}).encode(), JSON, "Bearer checker"),
    ("currency", json.dumps({**GOOD, "currency": "eur"}).encode(), JSON, "Bearer checker"),
    ("date", json.dumps({**GOOD, "on": "2025-13-01"}).encode(), JSON, "Bearer checker"),
]


async def _answers(router: APIRouter, *, lane: bool = False) -> list[tuple[int, dict[str, str], Any]]:
    answers = []
    transport = httpx.ASGITransport(app=_app(router, lane=lane))
    async with httpx.AsyncClient(transport=transport, base_url="http://credit") as client:
        for _, body, media_type, authorization in CASES:
            headers = {"content-type": media_type} if media_type else {}
            if authorization:
                headers["authorization"] = authorization
            response = await client.post("/credit-checks", content=body, headers=headers)
            answers.append((response.status_code, dict(response.headers), response.json()))
    return answers


async def test_the_lane_answers_as_the_route_does() -> None:
    # the cases run in order on each app, so repeats and conflicts meet the same history
    route_answers, laned_answers = await _answers(api.router), await _answers(api.router, lane=True)
    differing = [case[0] for case, answer, reference in zip(CASES, laned_answers, route_answers, strict=True)
                 if answer != reference]
    assert differing == []
    assert [status for status, _, _ in route_answers] == [
        200, 200, 409, 401, 401, 401, 401, 200, 403, 422, 422, 422, 400, 422, 401, 422, 422, 200, 200, 200,
        422, 422, 422, 422, 422, 422, 422, 422, 422]


def test_the_check_route_documents_its_body_and_scheme() -> None:
    operation = _app(api.router).openapi()["paths"]["/credit-checks"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CheckIn"}
    assert api.CheckIn.model_json_schema()["required"] == ["customer_id", "order_id", "amount", "currency"]


async def test_the_lane_answers_plain_checks_itself_and_hands_on_the_rest() -> None:
    # an app with the lane and no route at all: what reaches the app is not found
    transport = httpx.ASGITransport(app=_app(APIRouter(), lane=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://credit") as client:
        answered = await client.post("/credit-checks", json=GOOD, headers={"authorization": "Bearer checker"})
        handed_on = [await client.post("/credit-checks", json=GOOD),
                     await client.post("/credit-checks", json={**GOOD, "amount": 5},
                                       headers={"authorization": "Bearer checker"}),
                     await client.get("/credit-checks", headers={"authorization": "Bearer checker"})]
    assert answered.status_code == 200 and answered.json()["decision"] == "review"
    assert [r.status_code for r in handed_on] == [404, 404, 404]
    assert handed_on[1].json()["instance"] == "/credit-checks"


def test_the_fast_lane_is_on_unless_the_setting_turns_it_off(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"checker": ["credit:check"]}))
    for setting, expected in ((True, [CheckFastLane]), (False, [])):
        app = create_app(credit_settings(api_tokens_file=tokens, credit_check_fast_lane=setting))
        assert [m.cls for m in app.user_middleware if m.cls is CheckFastLane] == expected
