"""Who is signed in: the session cookie, the token's scopes, and the CSRF token of every form.

The cookie carries the bearer token (the console forwards it to the services, which audit
with its identity), so it is encrypted as well as signed: Fernet (AES-128-CBC + HMAC-SHA256,
with its own timestamp for expiry) keyed from ``RECEIVABLES_CONSOLE_SECRET``. A page never
shows the token again. The CSRF token is an HMAC of the session's random id: a form posted
without it, or with another session's, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from shared.tokens import Principal, Scopes, TokenRegistry

COOKIE_NAME = "receivables_session"


@dataclass(frozen=True)
class Session:
    """A signed-in user: the token forwarded to the services, who holds it, and the session id."""

    token: str
    principal: Principal
    session_id: str

    def can(self, scope: str) -> bool:
        return self.principal.has(scope)


def _key(secret: str, purpose: str) -> bytes:
    return hashlib.sha256(f"{purpose}\x1f{secret}".encode()).digest()


class Sessions:
    """Issues and reads session cookies; knows the tokens (``registry``; None: auth is off)."""

    def __init__(self, secret: str, registry: TokenRegistry | None, max_age_seconds: int) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_key(secret, "session")))
        self._csrf_key = _key(secret, "csrf")
        self.registry = registry
        self.max_age_seconds = max_age_seconds

    def principal(self, token: str) -> Principal | None:
        """Who holds ``token``: from the tokens file, or everyone everything with auth off (dev)."""
        if self.registry is None:
            return Principal("developer (auth disabled)", Scopes.ALL)
        return self.registry.authenticate(token)

    def issue(self, token: str) -> str:
        """The cookie value of a new session for ``token`` (a known one)."""
        payload = json.dumps({"t": token, "s": secrets.token_urlsafe(18)}).encode()
        return self._fernet.encrypt(payload).decode()

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie; None if absent, altered, expired, or its token is no longer known."""
        if not cookie:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.max_age_seconds))
            token, session_id = str(payload["t"]), str(payload["s"])
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        principal = self.principal(token)
        return Session(token, principal, session_id) if principal is not None else None

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        # As bytes: compare_digest raises TypeError on a str that is not ASCII.
        return bool(offered) and hmac.compare_digest(self.csrf_token(session.session_id).encode(),
                                                     str(offered).encode("utf-8", "surrogatepass"))
