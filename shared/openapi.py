"""Each service's OpenAPI document, true to the answers it gives.

FastAPI documents a route's success and a JSON ``HTTPValidationError`` for 422; the
services answer every error as ``application/problem+json`` (``shared.problems``), refuse
callers without a token (401) or scope (403), miss what a path names (404), and answer 503
while their store is unreachable. :func:`document_problems` rewrites the document once, for
every operation of an app:

- every 4xx/5xx answer an operation lists is a ``Problem`` in ``application/problem+json``;
- 401 and 403 on operations with a security requirement, 404 on operations with a path
  parameter, 422 on those with parameters or a body, 400 (a body that cannot be read) on
  those with a body, 409 on every write (a service's domain refusals are 409, wherever
  they come from), 503 on every operation but liveness and metrics (which read no store).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from shared.problems import PROBLEM_MEDIA_TYPE

_DESCRIPTIONS = {
    400: "The body cannot be read",
    401: "No bearer token, or one that is not known",
    403: "The token lacks the operation's scope",
    404: "Nothing with that id",
    409: "Refused: the request conflicts with the current state",
    422: "A parameter or the body is invalid (the problem names the field)",
    503: "The service's store is unreachable, or its read models are behind; retry after Retry-After",
}
# Operations that touch no store: they never answer 503.
_STORELESS = {"/health/live", "/metrics"}
_FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; more members may follow (e.g. `errors`).",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "stable URI of the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "the invalid fields (422)",
            "items": {"type": "object", "required": ["field", "message"],
                      "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
        },
    },
    "additionalProperties": True,
}
_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def answers_with(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """``responses`` for a route that renders its answer itself: documents it as ``model``,
    e.g. ``@router.get("/holds", responses=answers_with(HoldsOut))``."""
    return {status: {"model": model}}


def document_problems(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document with its problem answers listed (see the module)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            app.openapi_schema = with_problems(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every operation's problem answers (see the module)."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "patch", "delete"}:
                _list_problems(path, method, operation)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_ERRORS:
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    return document


def _list_problems(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses: set[int] = {int(status) for status in responses if status.isdigit() and int(status) >= 400}
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if path not in _STORELESS:
        statuses.add(503)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses.add(400)
    if method != "get":
        statuses.add(409)
    for status in sorted(statuses):
        answer = responses.setdefault(str(status), {})
        answer["description"] = _DESCRIPTIONS.get(status, answer.get("description", "Problem"))
        answer["content"] = _PROBLEM_CONTENT
        if status == 503:
            answer["headers"] = _RETRY_AFTER
    operation["responses"] = dict(sorted(responses.items()))

