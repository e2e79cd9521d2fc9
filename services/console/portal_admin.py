"""Issuing portal links: ``POST /portal-links`` for a program with a ``portal:admin`` bearer
token (JSON), and the same from the customer page for a signed-in user with that scope."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from services.console.portal_links import PortalLinks
from services.console.sessions import Session
from services.console.web import checked_form, render, require, sessions_of, settings_of, signed_in
from shared.auth import bearer_token
from shared.problems import Problem
from shared.tokens import Scopes

router = APIRouter(tags=["portal"])
log = logging.getLogger(__name__)


class PortalLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
    valid_days: int | None = Field(default=None, ge=1, le=366,
                                   description="default: RECEIVABLES_PORTAL_LINK_DAYS")


class PortalLinkOut(BaseModel):
    url: str
    expires_at: datetime
    link_id: str = Field(description="listed in RECEIVABLES_PORTAL_REVOKED_LINKS, revokes this link alone")


def _issue(request: Request, customer_id: str, valid_days: int | None, identity: str) -> PortalLinkOut:
    settings = settings_of(request)
    links: PortalLinks = request.app.state.portal_links
    token, expires_at, link_id = links.issue(customer_id, valid_days or settings.portal_link_days)
    # No service owns portal links, so the console keeps their trail: who, for whom, until when
    # (never the link itself).
    log.info("portal link %s issued by %s for customer %r, valid until %s", link_id, identity, customer_id,
             expires_at.isoformat())
    return PortalLinkOut(url=f"{settings.public_url.rstrip('/')}/portal/{token}", expires_at=expires_at,
                         link_id=link_id)


@router.post("/portal-links", status_code=201, response_model=PortalLinkOut)
async def create_portal_link(body: PortalLinkIn, request: Request) -> PortalLinkOut:
    token = bearer_token(request.headers.get("Authorization"))
    principal = sessions_of(request).principal(token) if token else None
    if principal is None:
        raise Problem(401, "unauthorized", detail="A known bearer token is required",
                      headers={"WWW-Authenticate": "Bearer"})
    if not principal.has(Scopes.PORTAL_ADMIN):
        raise Problem(403, "insufficient-scope", detail=f"This token lacks the scope {Scopes.PORTAL_ADMIN}",
                      required_scope=Scopes.PORTAL_ADMIN)
    return _issue(request, body.customer_id, body.valid_days, principal.identity)


@router.post("/customers/{customer_id}/portal-link", response_class=HTMLResponse)
async def portal_link_form(request: Request, customer_id: str,
                           session: Annotated[Session, Depends(signed_in)]) -> HTMLResponse:
    form = await checked_form(request, session)
    require(session, Scopes.PORTAL_ADMIN)
    try:
        valid_days = int(form.get("valid_days") or settings_of(request).portal_link_days)
    except ValueError:
        valid_days = 0
    if not 1 <= valid_days <= 366:
        return render(request, "refused.html", session, status=422, back=f"/customers/{customer_id}",
                      message="valid_days: a number of days from 1 to 366")
    link = _issue(request, customer_id, valid_days, session.principal.identity)
    return render(request, "portal_link.html", session, customer_id=customer_id, link=link)
