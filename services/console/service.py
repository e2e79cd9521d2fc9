"""The console's FastAPI app: pages, the portal, the portal-link API, the payment webhook.

Errors reach people as pages, never as stack traces: no session sends a browser to the
sign-in page; a form the console refuses, or a page that is not there, gets a page saying so;
anything unexpected is logged with an id and answered with a page naming only that id.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.console import collection_actions, dashboard, pages, portal, portal_admin, signing_in, webhook
from services.console.backends import Backends
from services.console.i18n import LANGUAGES, current_language, gettext
from services.console.portal_links import REDACT_LINKS, PortalLinks, redacted
from services.console.publisher import Publisher
from services.console.sessions import Sessions
from services.console.settings import ConsoleSettings
from services.console.web import NotSignedIn, Refused, language, render, signed_in
from shared.problems import Problem, problem_response
from shared.tokens import TokenRegistry

log = logging.getLogger(__name__)


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    registry: TokenRegistry | None = None
    if settings.auth_enabled:
        if settings.api_tokens_file is None:
            log.warning("RECEIVABLES_API_TOKENS_FILE is not set: no token can sign in to the console")
        registry = (TokenRegistry.from_file(settings.api_tokens_file) if settings.api_tokens_file
                    else TokenRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = Backends(settings.service_urls(), settings.backend_timeout_seconds)
        app.state.publisher = Publisher(settings.kafka_bootstrap)
        try:
            yield
        finally:
            await app.state.backends.close()
            await app.state.publisher.close()

    app = FastAPI(title="receivables console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    assert settings.console_secret is not None  # the settings refuse to exist without one
    app.state.sessions = Sessions(settings.console_secret, registry, settings.session_hours * 3600,
                                  settings.session_idle_minutes * 60)
    app.state.portal_links = PortalLinks(settings.console_secret, settings.portal_links_not_before,
                                         settings.revoked_link_ids)
    # Portal links are bearer credentials: uvicorn's access log keeps none (added once per process).
    logging.getLogger("uvicorn.access").addFilter(REDACT_LINKS)
    app.mount("/static", StaticFiles(directory=str(files("services.console") / "static")), name="static")
    for module in (signing_in, dashboard, pages, collection_actions, portal_admin, portal, webhook):
        app.include_router(module.router)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> dict[str, str]:
        # Holding no store, the console is ready once it serves; a service being down is shown on
        # the pages that need it, not by taking the whole console out of rotation.
        return {"status": "ready"}

    @app.middleware("http")
    async def in_the_users_language(request: Request, call_next: Any) -> Response:
        # Every message of this request, templates' and Python's, in the user's language.
        token = current_language.set(language(request))
        started = time.perf_counter()
        try:
            response: Response = await call_next(request)
        finally:
            current_language.reset(token)
        signing_in.renew_session(request, response)
        # The page's server time, services' answers included (bench/console.py reads it).
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.get("/language/{code}", include_in_schema=False)
    async def choose_language(code: str, back: str = "/") -> Response:
        if code not in LANGUAGES:
            raise StarletteHTTPException(404)
        response = RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/",
                                    status_code=303)
        response.set_cookie("lang", code, max_age=365 * 86400, httponly=True, samesite="lax")
        return response

    _install_error_pages(app)
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/portal-links", "/payments/")) or \
        "application/json" in request.headers.get("accept", "")


def _install_error_pages(app: FastAPI) -> None:
    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if request.method == "GET":
            return RedirectResponse("/sign-in", status_code=303)
        return render(request, "refused.html", None, status=401, back="/sign-in",
                      message=gettext("You are not signed in (or your session ended); sign in again."))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        session = None
        with contextlib.suppress(NotSignedIn):
            session = signed_in(request)
        return render(request, "refused.html", session, status=exc.status, message=exc.message,
                      back=request.headers.get("referer") or "/")

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if _wants_json(request):
            return problem_response(Problem(exc.status_code, "http-error", detail=str(exc.detail)),
                                    request.url.path)
        message = gettext("There is no such page.") if exc.status_code == 404 else str(exc.detail)
        return render(request, "refused.html", None, status=exc.status_code, message=message, back="/")

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [".".join(str(part) for part in error.get("loc", ())) + ": " + str(error.get("msg"))
                  for error in exc.errors()]
        if _wants_json(request):
            return problem_response(Problem(422, "validation-error", "Request validation failed",
                                            "; ".join(fields)), request.url.path)
        return render(request, "refused.html", None, status=422, message="; ".join(fields), back="/")

    async def unexpected(request: Request, exc: Exception) -> Response:
        error_id = uuid.uuid4().hex
        log.error("unhandled error %s on %s %s", error_id, request.method,
                  redacted(request.url.path, app.state.portal_links), exc_info=exc)
        if _wants_json(request):
            return problem_response(Problem(500, "internal-error", detail="An unexpected error occurred",
                                            error_id=error_id), request.url.path)
        return render(request, "refused.html", None, status=500, back="/",
                      message=gettext("Something went wrong on our side; it has been logged as %(id)s.",
                                      id=error_id))

    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(Problem, problem)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
