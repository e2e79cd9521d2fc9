"""Sign-in with a bearer token, and sign-out.

The sign-in form is itself CSRF-protected (a random value in a short-lived cookie, its HMAC
in the form), so another site cannot sign a browser in with the attacker's token. The
session cookie is HttpOnly, SameSite=Strict, Secure when the console is served over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console.i18n import gettext as _
from services.console.sessions import COOKIE_NAME
from services.console.web import checked_form, render, sessions_of, settings_of

router = APIRouter(tags=["console"])
PRE_COOKIE = "receivables_signin"


def _signin_csrf(request: Request, nonce: str) -> str:
    key = hashlib.sha256(f"signin\x1f{settings_of(request).console_secret}".encode()).digest()
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or settings_of(request).public_url.startswith("https://")


def signin_page(request: Request, message: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    response = render(request, "signin.html", None, status=status, message=message,
                      signin_csrf=_signin_csrf(request, nonce))
    response.set_cookie(PRE_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
                        secure=_secure(request), path="/sign-in")
    return response


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> HTMLResponse:
    return signin_page(request)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    form = await request.form()
    token = str(form.get("token") or "").strip()
    nonce = request.cookies.get(PRE_COOKIE, "")
    offered = str(form.get("csrf_token") or "")
    # As bytes: compare_digest raises TypeError on a str that is not ASCII (a 500, not a 403).
    if not nonce or not hmac.compare_digest(_signin_csrf(request, nonce).encode(),
                                            offered.encode("utf-8", "surrogatepass")):
        return signin_page(request, _("The sign-in form expired; please try again."), status=403)
    sessions = sessions_of(request)
    if not token or sessions.principal(token) is None:
        return signin_page(request, _("This token is not known."), status=401)
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(request, response, sessions.issue(token), sessions.max_age_seconds)
    response.delete_cookie(PRE_COOKIE, path="/sign-in")
    return response


def _set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE_NAME, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=_secure(request), path="/")


def renew_session(request: Request, response: Response) -> None:
    """Gives a session in use a fresh cookie (its idle time starts again), unless the response
    sets or clears the session cookie itself (sign-in, sign-out)."""
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie or any(value.startswith(f"{COOKIE_NAME}=")
                         for name, value in response.headers.items() if name == "set-cookie"):
        return
    sessions = sessions_of(request)
    session = sessions.read(cookie)
    renewed = sessions.renewal(session) if session is not None else None
    if session is not None and renewed is not None:
        _set_session_cookie(request, response, renewed, sessions.remaining(session))


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    sessions = sessions_of(request)
    session = sessions.read(request.cookies.get(COOKIE_NAME))
    if session is not None:
        await checked_form(request, session)  # another site may not sign a user out either
        sessions.revoke(session)  # a copy of the cookie is refused too (in this process)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
