"""Signed, expiring links to one customer's portal: ``/portal/<token>``.

The token is the customer id and an expiry, signed with HMAC-SHA256 under the console secret
(itsdangerous, with a salt of its own so that no other signed value of the console passes as
a link). Whoever holds the link sees that customer and nothing else: every portal request
takes the customer from the verified token, never from the URL or a form. A link is refused
when altered, past its expiry, revoked by its id (``RECEIVABLES_PORTAL_REVOKED_LINKS``, the ids
``POST /portal-links`` answered with), or issued before ``RECEIVABLES_PORTAL_LINKS_NOT_BEFORE``
(the way to revoke every link given out so far; changing the secret does the same). Both are
settings, not a store: the console keeps none.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from services.console.i18n import gettext as _

SALT = "receivables.portal-link"
# A portal path's link segment: a bearer credential (valid up to a year) that logs must not keep.
_LINK_IN_PATH = re.compile(r"/portal/[^/?#\s\"]+")


class LinkRefused(Exception):
    """The link cannot be used; the message says why in words a customer understands."""


@dataclass(frozen=True)
class PortalLink:
    customer_id: str
    expires_at: datetime
    issued_at: datetime
    link_id: str


def redacted(text: str, links: PortalLinks | None = None) -> str:
    """``text`` with every ``/portal/<token>`` written ``/portal/<link ID>`` (the id of a link
    ``links`` signed, which revokes it) or ``/portal/<link>``: what a log may keep."""
    def one(found: re.Match[str]) -> str:
        link_id = links.link_id_of(found.group(0).removeprefix("/portal/")) if links else None
        return f"/portal/<link {link_id}>" if link_id else "/portal/<link>"
    return _LINK_IN_PATH.sub(one, text)


class RedactLinks(logging.Filter):
    """On ``uvicorn.access``: the request line's path (its third argument) with links redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redacted(arg) if isinstance(arg, str) else arg for arg in record.args)
        record.msg = redacted(record.msg) if isinstance(record.msg, str) else record.msg
        return True


REDACT_LINKS = RedactLinks()


class PortalLinks:
    def __init__(self, secret: str, not_before: datetime | None = None,
                 revoked: frozenset[str] = frozenset()) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.not_before = not_before
        self.revoked = revoked

    def issue(self, customer_id: str, valid_days: int,
              now: datetime | None = None) -> tuple[str, datetime, str]:
        """A new link token for ``customer_id``, the instant it expires, and its id (to revoke it)."""
        now = now or datetime.now(UTC)
        expires_at = (now + timedelta(days=valid_days)).replace(microsecond=0)
        link_id = secrets.token_urlsafe(9)
        payload = {"c": customer_id, "x": int(expires_at.timestamp()), "n": link_id}
        return str(self._serializer.dumps(payload)), expires_at, link_id

    def link_id_of(self, token: str) -> str | None:
        """The id of a link this secret signed, expired or not (None: not one)."""
        try:
            return str(self._serializer.loads(token)["n"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def verify(self, token: str, now: datetime | None = None) -> PortalLink:
        now = now or datetime.now(UTC)
        try:
            payload, signed_at = self._serializer.loads(token, return_timestamp=True)
            customer_id, expires, link_id = str(payload["c"]), int(payload["x"]), str(payload["n"])
        except SignatureExpired:
            raise LinkRefused(_("This link has expired.")) from None
        except (BadSignature, KeyError, TypeError, ValueError):
            raise LinkRefused(_("This link is not valid.")) from None
        expires_at = datetime.fromtimestamp(expires, UTC)
        if now >= expires_at:
            raise LinkRefused(_("This link has expired; ask us for a new one."))
        if link_id in self.revoked or (self.not_before is not None and signed_at < self.not_before):
            raise LinkRefused(_("This link has been withdrawn; ask us for a new one."))
        return PortalLink(customer_id, expires_at, signed_at, link_id)
