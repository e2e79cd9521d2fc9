"""Who is signed in: the session cookie, the token's scopes, and the CSRF token of every form.

The cookie carries the bearer token (the console forwards it to the services, which audit
with its identity), so it is encrypted as well as signed: Fernet (AES-128-CBC + HMAC-SHA256,
with its own timestamp for expiry) keyed from ``RECEIVABLES_CONSOLE_SECRET``. A page never
shows the token again. The CSRF token is an HMAC of the session's random id: a form posted
without it, or with another session's, is refused.

A session ends for good when it is signed out, idle too long, or old enough. The console
holds no store of its own, so the two lifetimes live in the cookie: Fernet's timestamp is the
last renewal (a request within ``idle_seconds`` of it keeps the session; the cookie is renewed
as it is used) and ``i`` the sign-in (no session outlives ``max_age_seconds``, renewed or
not). Signing out revokes the session id in this process (``revoke``): a copy of the cookie is
refused here at once, and by another replica once it has been idle for ``idle_seconds``, the
bound that holds without a shared store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
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
    started: int = 0  # sign-in, seconds since the epoch
    renewed: int = 0  # the cookie's last renewal

    def can(self, scope: str) -> bool:
        return self.principal.has(scope)


def _key(secret: str, purpose: str) -> bytes:
    return hashlib.sha256(f"{purpose}\x1f{secret}".encode()).digest()


class Sessions:
    """Issues, renews, revokes and reads session cookies; knows the tokens (``registry``; None:
    auth is off). ``now`` is the clock (seconds), a parameter for the tests."""

    def __init__(self, secret: str, registry: TokenRegistry | None, max_age_seconds: int,
                 idle_seconds: int | None = None, now: Callable[[], float] = time.time) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_key(secret, "session")))
        self._csrf_key = _key(secret, "csrf")
        self.registry = registry
        self.max_age_seconds = max_age_seconds
        self.idle_seconds = min(idle_seconds or max_age_seconds, max_age_seconds)
        self._now = now
        self._revoked: dict[str, int] = {}  # session id -> when its cookie would have expired anyway

    def principal(self, token: str) -> Principal | None:
        """Who holds ``token``: from the tokens file, or everyone everything with auth off (dev)."""
        if self.registry is None:
            return Principal("developer (auth disabled)", Scopes.ALL)
        return self.registry.authenticate(token)

    def issue(self, token: str) -> str:
        """The cookie value of a new session for ``token`` (a known one)."""
        return self._cookie(token, secrets.token_urlsafe(18), int(self._now()))

    def _cookie(self, token: str, session_id: str, started: int) -> str:
        payload = json.dumps({"t": token, "s": session_id, "i": started}).encode()
        return self._fernet.encrypt_at_time(payload, int(self._now())).decode()

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie; None if absent, altered, idle or old past its lifetimes,
        signed out, or its token is no longer known."""
        if not cookie:
            return None
        now = int(self._now())
        try:
            raw = cookie.encode()
            payload = json.loads(self._fernet.decrypt_at_time(raw, self.idle_seconds, now))
            token, session_id, started = str(payload["t"]), str(payload["s"]), int(payload["i"])
            renewed = self._fernet.extract_timestamp(raw)
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if now - started > self.max_age_seconds or session_id in self._revoked:
            return None
        principal = self.principal(token)
        return Session(token, principal, session_id, started, renewed) if principal is not None else None

    def renewal(self, session: Session) -> str | None:
        """A fresh cookie for a session in use, once a quarter of its idle time has passed since
        the last (so a page load does not re-issue it each time); None when not yet due."""
        if self._now() - session.renewed < self.idle_seconds / 4:
            return None
        return self._cookie(session.token, session.session_id, session.started)

    def remaining(self, session: Session) -> int:
        """Seconds until the session's absolute end (the cookie's Max-Age)."""
        return max(0, session.started + self.max_age_seconds - int(self._now()))

    def revoke(self, session: Session) -> None:
        """Ends ``session`` in this process (sign-out). Kept until its lifetime would have ended."""
        now = int(self._now())
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session.session_id] = session.started + self.max_age_seconds

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        # As bytes: compare_digest raises TypeError on a str that is not ASCII.
        return bool(offered) and hmac.compare_digest(self.csrf_token(session.session_id).encode(),
                                                     str(offered).encode("utf-8", "surrogatepass"))
