"""Errors as RFC 9457 ``application/problem+json``, mapped in one place for every service.

Routes raise :class:`Problem`, or let a domain error (``shared.errors.DomainError``) go: each
service says once how its domain errors are answered (:class:`DomainProblems`, given to
:func:`install_problem_handlers`). Everything else that goes wrong, from an unknown route to
a failed request validation to a bug, is turned into a problem document here too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

import eventsourcing.persistence
import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"
# The one base of every problem `type`; clients match on the full URI, so never change it.
PROBLEM_TYPE_BASE = "https://receivables.dev/problems/"

_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})

# What a store that cannot be reached raises, through SQLAlchemy (the read models), the
# eventsourcing library (the event store) or psycopg itself (its pool's timeout included):
# answered 503 with Retry-After, not 500. (Not SQLAlchemy's InterfaceError: on SQLite that is
# a value the driver cannot bind, a bug.)
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError, sqlalchemy.exc.DisconnectionError,
    eventsourcing.persistence.OperationalError, eventsourcing.persistence.InterfaceError,
    psycopg.OperationalError, psycopg.InterfaceError,
)
STORE_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def problem_type(slug: str) -> str:
    """The stable ``type`` URI for a slug, e.g. ``https://receivables.dev/problems/not-found``."""
    return PROBLEM_TYPE_BASE + slug


class ProblemResponse(JSONResponse):
    """A JSON response served as ``application/problem+json``."""

    media_type = PROBLEM_MEDIA_TYPE


class Problem(StarletteHTTPException):
    """An error a route raises to answer with a problem document.

    ``slug`` names the kind of problem (it becomes the ``type`` URI); ``extra`` keyword
    arguments become extension members of the document. Being an ``HTTPException``, it
    still yields the right status if the problem handlers were not installed.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        title: str | None = None,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        clashing = _MEMBERS & extra.keys()
        if clashing:
            raise ValueError(f"extension members may not reuse standard names: {sorted(clashing)}")
        self.status = status
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.extra = extra
        super().__init__(status_code=status, detail=detail or self.title, headers=dict(headers or {}))

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document as a JSON-ready dict."""
        document: dict[str, Any] = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            document["instance"] = instance
        document.update(self.extra)
        return document


def field_problem(field: str, message: str, *, status: int = 422, slug: str = "validation-error",
                  title: str | None = None) -> Problem:
    """The problem naming one field as the request names it (``body.amount``, ``query.to``)."""
    return Problem(status, slug, title, f"{field}: {message}", errors=[{"field": field, "message": message}])


REQUEST_INVALID = "Request validation failed"  # the title of a request that fails its checks


def not_found(kind: str, id: str) -> Problem:
    """The 404 problem for a missing resource, e.g. ``raise not_found("invoice", invoice_id)``."""
    return Problem(404, "not-found", detail=f"No {kind} with id {id!r}", resource=kind, resource_id=id)


def problem_response(problem: Problem, path: str) -> ProblemResponse:
    """The response answering ``problem`` for a request to ``path`` (its ``instance``)."""
    document = problem.to_dict(instance=path)
    return ProblemResponse(document, status_code=problem.status, headers=problem.headers)


def _respond(request: Request, problem: Problem) -> ProblemResponse:
    return problem_response(problem, request.url.path)


def _slug_for_status(status: int) -> str:
    # "Not Found" -> "not-found", "Method Not Allowed" -> "method-not-allowed".
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "http-error"


def _from_http_exception(request: Request, exc: StarletteHTTPException) -> Problem:
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "HTTP Error"
    extra: dict[str, Any] = {}
    if not isinstance(exc.detail, str):
        extra["context"] = exc.detail
        detail = title
    elif exc.detail == title and exc.status_code == 404:
        detail = f"Nothing at {request.url.path}"
    elif exc.detail == title and exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = exc.detail
    return Problem(
        exc.status_code, _slug_for_status(exc.status_code), title, detail, headers=exc.headers, **extra
    )


def field_name(location: tuple[int | str, ...]) -> str:
    # ("body", "items", 0, "amount") -> "body.items[0].amount"
    name = ""
    for part in location:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


def _from_validation_error(exc: RequestValidationError) -> Problem:
    errors = []
    for error in exc.errors():
        location = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            # The location of a JSON syntax error is a character offset, not a field.
            location = location[:1]
        # The offending input is not echoed back: it may be large or hold secrets.
        errors.append({"field": field_name(location), "message": str(error.get("msg", "invalid"))})
    detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors) or "Invalid request"
    return Problem(422, "validation-error", REQUEST_INVALID, detail, errors=errors)


@dataclass(frozen=True)
class DomainProblems:
    """How a service answers its domain errors, in one place.

    ``kinds`` maps error classes to ``(status, slug)``; an error takes the entry of the first
    of its classes listed (its own, else its nearest base's). An error naming its ``field`` is
    answered with that field as the request names it (``fields``: ``"amount"`` ->
    ``"body.amount"``; a field not listed is ``default_field``), in ``detail`` and ``errors``;
    one naming none, with its text as the ``detail``.
    """

    kinds: Mapping[type[DomainError], tuple[int, str]]
    fields: Mapping[str, str] = field(default_factory=dict)
    default_field: str = "body"

    def problem(self, error: DomainError) -> Problem:
        """The problem answering ``error``."""
        status, slug = next(self.kinds[kind] for kind in type(error).__mro__ if kind in self.kinds)
        if error.field is None:
            return Problem(status, slug, detail=str(error))
        where = self.fields.get(error.field, self.default_field)
        return field_problem(where, str(error).removeprefix(f"{error.field}: "), status=status, slug=slug)


def install_problem_handlers(app: FastAPI, domain_problems: DomainProblems | None = None) -> None:
    """Answer every error of ``app`` with a problem document; its domain errors as
    ``domain_problems`` says (the service's one mapping)."""

    # Starlette picks the handler by the exception's class, so the casts only inform mypy.
    async def handle_problem(request: Request, exc: Exception) -> ProblemResponse:
        return _respond(request, cast(Problem, exc))

    async def handle_http_exception(request: Request, exc: Exception) -> ProblemResponse:
        return _respond(request, _from_http_exception(request, cast(StarletteHTTPException, exc)))

    async def handle_validation_error(request: Request, exc: Exception) -> ProblemResponse:
        return _respond(request, _from_validation_error(cast(RequestValidationError, exc)))

    async def handle_store_unavailable(request: Request, exc: Exception) -> ProblemResponse:
        logger.warning("store unreachable on %s %s: %s", request.method, request.url.path, exc)
        problem = Problem(503, "store-unavailable", detail="The service's store is unreachable; retry later",
                          headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})
        return _respond(request, problem)

    async def handle_unexpected(request: Request, exc: Exception) -> ProblemResponse:
        if isinstance(exc, STORE_UNAVAILABLE):  # raised outside the routes (an ASGI lane)
            return await handle_store_unavailable(request, exc)
        # The body says only that something failed; the trace goes to the log under this id.
        error_id = uuid.uuid4().hex
        logger.error("unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        problem = Problem(
            500,
            "internal-error",
            detail="An unexpected error occurred; it has been logged",
            error_id=error_id,
        )
        return _respond(request, problem)

    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)
    for error_class in STORE_UNAVAILABLE:
        app.add_exception_handler(error_class, handle_store_unavailable)

    if domain_problems is not None:
        mapping = domain_problems

        async def handle_domain_error(request: Request, exc: Exception) -> ProblemResponse:
            return _respond(request, mapping.problem(cast(DomainError, exc)))

        for error_class in domain_problems.kinds:
            app.add_exception_handler(error_class, handle_domain_error)
