"""Scoped bearer-token auth for the REST APIs, as FastAPI dependencies.

Tokens come from the JSON file named by ``RECEIVABLES_API_TOKENS_FILE``, in either form::

    {"<token>": ["ledger:read", "ledger:write"]}
    {"<token>": {"name": "erp-bridge", "scopes": ["ledger:write"]}}

A route declares the scope it needs and receives the caller::

    @router.get("/invoices/{invoice_id}")
    async def get_invoice(invoice_id: str, principal: LedgerReader) -> InvoiceView: ...

    @router.post("/events", dependencies=[require_scope(Scopes.LEDGER_WRITE)])
    async def post_events(...) -> ...: ...

A missing or unknown token is 401 (with ``WWW-Authenticate: Bearer``); a token without the
scope is 403. The registry lives on ``app.state.auth``, put there by :func:`install_auth`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

from fastapi import Depends, FastAPI, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from shared.problems import Problem

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)


class Scopes:
    """Every scope the contract names."""

    LEDGER_READ: Final = "ledger:read"
    LEDGER_WRITE: Final = "ledger:write"
    DUNNING_READ: Final = "dunning:read"
    DUNNING_WRITE: Final = "dunning:write"
    CREDIT_READ: Final = "credit:read"
    CREDIT_CHECK: Final = "credit:check"
    CREDIT_WRITE: Final = "credit:write"
    CREDIT_OVERRIDE: Final = "credit:override"
    OPS_REPLAY: Final = "ops:replay"

    ALL: Final = frozenset(
        {
            LEDGER_READ,
            LEDGER_WRITE,
            DUNNING_READ,
            DUNNING_WRITE,
            CREDIT_READ,
            CREDIT_CHECK,
            CREDIT_WRITE,
            CREDIT_OVERRIDE,
            OPS_REPLAY,
        }
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: a non-secret ``identity`` (for audit trails) and the scopes granted."""

    identity: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        """True if this caller was granted ``scope``."""
        return scope in self.scopes


ANONYMOUS: Final = Principal("anonymous", Scopes.ALL)


class TokenFileError(ValueError):
    """The tokens file is missing, unreadable, or not of the documented shape."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _default_identity(digest: bytes) -> str:
    # The first 8 hex digits of the token's sha256: stable, and safe to log.
    return f"token:{digest.hex()[:8]}"


class TokenRegistry:
    """The known tokens, kept only as sha256 digests, each with its :class:`Principal`."""

    def __init__(self, principals_by_digest: Mapping[bytes, Principal] | None = None) -> None:
        self._principals_by_digest = dict(principals_by_digest or {})

    def __len__(self) -> int:
        return len(self._principals_by_digest)

    @classmethod
    def from_mapping(cls, data: object) -> TokenRegistry:
        """Build from the parsed tokens file; raises :class:`TokenFileError` naming the bad entry.

        Error messages name a token by its identity, never by the token itself.
        """
        if not isinstance(data, dict):
            raise TokenFileError('expected a JSON object {"<token>": ["scope", ...]}')
        principals: dict[bytes, Principal] = {}
        for token, entry in data.items():
            if not token or token != token.strip() or any(c.isspace() for c in token):
                raise TokenFileError("a token is empty or contains whitespace")
            digest = _digest(token)
            identity = _default_identity(digest)
            if isinstance(entry, dict):
                unexpected = entry.keys() - {"name", "scopes"}
                if unexpected:
                    raise TokenFileError(f"{identity}: unexpected keys {sorted(unexpected)}")
                name = entry.get("name", identity)
                if not isinstance(name, str) or not name.strip():
                    raise TokenFileError(f"{identity}: 'name' must be a non-empty string")
                identity, scopes = name, entry.get("scopes")
            else:
                scopes = entry
            if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
                raise TokenFileError(f"{identity}: scopes must be a list of strings")
            unknown = set(scopes) - Scopes.ALL
            if unknown:
                raise TokenFileError(
                    f"{identity}: unknown scopes {sorted(unknown)}; known: {', '.join(sorted(Scopes.ALL))}"
                )
            principals[digest] = Principal(identity, frozenset(scopes))
        return cls(principals)

    @classmethod
    def from_file(cls, path: Path) -> TokenRegistry:
        """Load the tokens file; raises :class:`TokenFileError` if it is missing or malformed."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TokenFileError(f"{path} does not exist") from None
        except OSError as error:
            raise TokenFileError(f"{path} cannot be read: {error.strerror or error}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TokenFileError(f"{path} is not valid JSON: {error}") from None
        try:
            return cls.from_mapping(data)
        except TokenFileError as error:
            raise TokenFileError(f"{path}: {error}") from None

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None if the token is unknown."""
        digest = _digest(token)
        # Every known digest is compared, in constant time, so timing tells nothing about
        # which token (if any) matched; the registry holds a handful of tokens.
        found = None
        for known_digest, principal in self._principals_by_digest.items():
            if hmac.compare_digest(known_digest, digest):
                found = principal
        return found


@dataclass(frozen=True)
class AuthState:
    """What :func:`require_scope` reads from ``app.state.auth``."""

    enabled: bool
    registry: TokenRegistry

    def principal(self, token: str | None) -> Principal | None:
        """Who holds ``token`` (anyone is ``ANONYMOUS`` with auth disabled); None if unknown or missing."""
        if not self.enabled:
            return ANONYMOUS
        return self.registry.authenticate(token) if token is not None else None


def install_auth(app: FastAPI, settings: ServiceSettings, registry: TokenRegistry | None = None) -> None:
    """Set up token checks for ``app`` from ``settings`` (or from an explicit ``registry``, for tests)."""
    if not settings.auth_enabled:
        logger.warning(
            "AUTHENTICATION IS DISABLED (RECEIVABLES_AUTH=disabled, `receivables dev`): "
            "every request is allowed every scope"
        )
        app.state.auth = AuthState(enabled=False, registry=TokenRegistry())
        return
    if registry is None:
        if settings.api_tokens_file is None:
            logger.warning(
                "RECEIVABLES_API_TOKENS_FILE is not set: no token is known, "
                "every request will be refused (401)"
            )
            registry = TokenRegistry()
        else:
            registry = TokenRegistry.from_file(settings.api_tokens_file)
    app.state.auth = AuthState(enabled=True, registry=registry)


# A stateless description of the scheme; it also puts bearer auth into the OpenAPI document.
_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str, challenge: str) -> Problem:
    return Problem(401, "unauthorized", detail=detail, headers={"WWW-Authenticate": challenge})


def require_scope(scope: str) -> params.Depends:
    """A dependency that lets the request through only with ``scope``, and yields its :class:`Principal`.

    Use it as ``Annotated[Principal, require_scope(...)]`` or in a route's ``dependencies``.
    """
    if scope not in Scopes.ALL:
        raise ValueError(f"unknown scope {scope!r}")

    async def principal_with_scope(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return _principal_with_scope(request, credentials.credentials if credentials else None, scope)

    return params.Depends(principal_with_scope)


def _principal_with_scope(request: Request, token: str | None, scope: str) -> Principal:
    state = getattr(request.app.state, "auth", None)
    if not isinstance(state, AuthState):
        # Fail closed: a service that forgot install_auth must not serve unauthenticated.
        raise RuntimeError("install_auth(app, settings) was not called for this app")
    principal = state.principal(token)
    if principal is None:
        if token is None:
            raise _unauthorized("A bearer token is required", "Bearer")
        raise _unauthorized("The bearer token is not known", 'Bearer error="invalid_token"')
    if not principal.has(scope):
        raise Problem(
            403,
            "insufficient-scope",
            detail=f"This token lacks the scope {scope}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            required_scope=scope,
        )
    # Kept on the request too, for audit records written below the route.
    request.state.principal = principal
    return principal


def authorize(request: Request, scope: str) -> Principal:
    """What :func:`require_scope` does, as a plain call: the caller if it holds ``scope``, else
    the same 401/403 problem.

    For a hot route: the dependency and its ``HTTPBearer`` sub-dependency cost FastAPI about
    25 µs a request, reading the header here a few. Such a route declares the bearer scheme
    in its OpenAPI itself (``BEARER_SECURITY``).
    """
    if scope not in Scopes.ALL:
        raise ValueError(f"unknown scope {scope!r}")
    return _principal_with_scope(request, bearer_token(request.headers.get("Authorization")), scope)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` header of the bearer scheme, read exactly as
    ``HTTPBearer`` reads it; None without one."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


# A route checking its scope with authorize() names the scheme in its OpenAPI operation:
# ``openapi_extra={"security": BEARER_SECURITY}`` (the scheme's name is HTTPBearer's).
BEARER_SECURITY: Final[list[dict[str, list[str]]]] = [{_bearer.scheme_name: []}]


LedgerReader = Annotated[Principal, require_scope(Scopes.LEDGER_READ)]
LedgerWriter = Annotated[Principal, require_scope(Scopes.LEDGER_WRITE)]
DunningReader = Annotated[Principal, require_scope(Scopes.DUNNING_READ)]
DunningWriter = Annotated[Principal, require_scope(Scopes.DUNNING_WRITE)]
CreditReader = Annotated[Principal, require_scope(Scopes.CREDIT_READ)]
CreditChecker = Annotated[Principal, require_scope(Scopes.CREDIT_CHECK)]
CreditWriter = Annotated[Principal, require_scope(Scopes.CREDIT_WRITE)]
CreditOverrider = Annotated[Principal, require_scope(Scopes.CREDIT_OVERRIDE)]
ReplayOperator = Annotated[Principal, require_scope(Scopes.OPS_REPLAY)]
