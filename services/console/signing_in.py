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
    response.set_cookie(COOKIE_NAME, sessions.issue(token), max_age=sessions.max_age_seconds, httponly=True,
                        samesite="strict", secure=_secure(request), path="/")
    response.delete_cookie(PRE_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = sessions_of(request).read(request.cookies.get(COOKIE_NAME))
    if session is not None:
        await checked_form(request, session)  # another site may not sign a user out either
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
