"""Scoped bearer-token auth for the REST APIs, as FastAPI dependencies.

Tokens come from the JSON file named by ``RECEIVABLES_API_TOKENS_FILE`` (its format, the
scopes and the registry of known tokens: ``shared.tokens``).

A route declares the scope it needs and receives the caller::

    @router.get("/invoices/{invoice_id}")
    async def get_invoice(invoice_id: str, principal: LedgerReader) -> InvoiceView: ...

    @router.post("/events", dependencies=[require_scope(Scopes.LEDGER_WRITE)])
    async def post_events(...) -> ...: ...

A missing or unknown token is 401 (with ``WWW-Authenticate: Bearer``); a token without the
scope is 403. The registry lives on ``app.state.auth``, put there by :func:`install_auth`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, FastAPI, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from shared.problems import Problem
from shared.settings import ServiceSettings
from shared.tokens import Principal, Scopes, TokenRegistry

logger = logging.getLogger(__name__)


ANONYMOUS: Final = Principal("anonymous", Scopes.ALL)


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
DunningApprover = Annotated[Principal, require_scope(Scopes.DUNNING_APPROVE)]
CreditReader = Annotated[Principal, require_scope(Scopes.CREDIT_READ)]
CreditChecker = Annotated[Principal, require_scope(Scopes.CREDIT_CHECK)]
CreditWriter = Annotated[Principal, require_scope(Scopes.CREDIT_WRITE)]
CreditOverrider = Annotated[Principal, require_scope(Scopes.CREDIT_OVERRIDE)]
ReplayOperator = Annotated[Principal, require_scope(Scopes.OPS_REPLAY)]
