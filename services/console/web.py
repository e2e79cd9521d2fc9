"""What every page and form shares: the templates, the signed-in user, CSRF, scopes, trouble.

A page handler asks :func:`signed_in` for the session (no session: to the sign-in page), and
renders with :func:`render`, which gives every template the user, the scopes it may use
(buttons appear only for those), the CSRF token, the language and the formatters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console import formatting
from services.console.backends import Answer, Backends
from services.console.i18n import LANGUAGES, N_, gettext, ntranslate, translate
from services.console.sessions import COOKIE_NAME, Session, Sessions
from services.console.settings import ConsoleSettings

TEMPLATES = Environment(
    loader=FileSystemLoader(str(files("services.console") / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# Translated in the request's language (set by the app's middleware; see services.console.i18n).
TEMPLATES.install_gettext_callables(translate, ntranslate, newstyle=True)  # type: ignore[attr-defined]
# What a service answers (a status, a kind) is data, not a message: `_()` (newstyle) would make
# it Markup, unescaped, and %-format it (a 500 on "50%"). `word()` gives a plain str, which
# autoescape escapes; `_()` stays for the literal messages of the templates.
TEMPLATES.globals["word"] = lambda value: translate(str(value))

# What a redirect after a successful form may say (a key in the URL, never free text).
DONE_MESSAGES = {
    "assigned": N_("The collector was assigned."),
    "call": N_("The call was logged."),
    "promise": N_("The promise to pay was recorded."),
    "plan": N_("The payment plan was requested; it awaits approval."),
    "released": N_("The hold was released."),
    "approved": N_("The payment plan was approved."),
    "rejected": N_("The payment plan was rejected."),
    "acknowledged": N_("The warning was acknowledged."),
    "dispute": N_("Your dispute was sent; we will look into it."),
    "confirmed": N_("Thank you: your answer on the balance was recorded."),
}


class NotSignedIn(Exception):
    """Raised by :func:`signed_in` without a session: the app answers with the sign-in page."""


class Refused(Exception):
    """A form the console refuses itself (bad CSRF token, missing scope, bad input): ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def settings_of(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.settings
    return settings


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def backends_of(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


def signed_in(request: Request) -> Session:
    session = sessions_of(request).read(request.cookies.get(COOKIE_NAME))
    if session is None:
        raise NotSignedIn()
    return session


def require(session: Session, scope: str) -> None:
    """Refuse (403) a form whose action needs ``scope`` when the session's token lacks it."""
    if not session.can(scope):
        raise Refused(403, gettext("Your token lacks the scope %(scope)s: this action is not yours to take.",
                                   scope=scope))


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form's fields, once its CSRF token is this session's (else 403)."""
    form = await request.form()
    fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    if not sessions_of(request).csrf_ok(session, fields.get("csrf_token")):
        raise Refused(403, gettext("This form has expired or did not come from this console; reload the "
                                   "page and try again."))
    return fields


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def language(request: Request) -> str:
    return formatting.language_of(request.headers.get("accept-language"), request.cookies.get("lang"))


def render(request: Request, template: str, session: Session | None = None, status: int = 200,
           troubles: list[Answer] | None = None, **context: Any) -> HTMLResponse:
    lang = language(request)
    done_key = request.query_params.get("done", "")
    done = gettext(DONE_MESSAGES[done_key]) if done_key in DONE_MESSAGES else None
    body = TEMPLATES.get_template(template).render(
        request=request, session=session, lang=lang, done=done,
        csrf_token=sessions_of(request).csrf_token(session.session_id) if session else None,
        can=(session.can if session else (lambda scope: False)),
        troubles=[answer.trouble for answer in troubles or [] if answer.trouble],
        money=lambda value, currency=None: formatting.money(value, currency, lang),
        number=lambda value, pattern="#,##0.##": formatting.number(value, lang, pattern),
        day=lambda value: formatting.day(value, lang),
        auth_disabled=not settings_of(request).auth_enabled, languages=LANGUAGES,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


# No page is framed elsewhere, and no script or style comes from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def back_to(path: str, done: str, **params: str) -> Response:
    """303 to a page of this console after a form succeeded (only local paths are followed)."""
    if not path.startswith("/") or path.startswith("//"):
        path = "/"
    query = urlencode({**{k: v for k, v in params.items() if v}, "done": done})
    return RedirectResponse(f"{path}{'&' if '?' in path else '?'}{query}", status_code=303)


def result_page(request: Request, session: Session | None, answer: Answer, back: str) -> HTMLResponse:
    """The page after a form the service refused: what it said, and the way back."""
    status = answer.status if answer.status and answer.status >= 400 else 502
    return render(request, "refused.html", session, status=status, troubles=[answer], back=back,
                  fields=answer.fields)
