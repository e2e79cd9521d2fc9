"""The three services as the console asks them: over their REST APIs, with a caller's token.

Every call ends in an :class:`Answer`. A service that is down, slow, or answers with a
problem document gives an answer whose ``trouble`` is a sentence a person can act on (and the
problem's status and detail), never an exception that would reach a page as a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from services.console.i18n import N_, gettext

log = logging.getLogger(__name__)

SERVICE_NAMES = {"ledger": N_("ledger"), "dunning": N_("collections (dunning)"), "credit": N_("credit")}


@dataclass(frozen=True)
class Answer:
    """A service's answer: ``body`` when it succeeded, else ``trouble`` saying what went wrong."""

    service: str
    status: int | None
    body: Any = None
    trouble: str | None = None
    # The problem's fields named by a 422 (``body.amount``), for the form that sent them.
    fields: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.trouble is None


def _problem_answer(service: str, response: httpx.Response) -> Answer:
    name = gettext(SERVICE_NAMES[service])
    try:
        document = response.json()
    except ValueError:
        document = {}
    detail = document.get("detail") if isinstance(document, dict) else None
    fields = tuple(str(error.get("field")) for error in document.get("errors", []) or []
                   if isinstance(error, dict)) if isinstance(document, dict) else ()
    if response.status_code == 401:
        trouble = gettext("The %(service)s service does not know your token; sign in again.", service=name)
    elif response.status_code == 403:
        trouble = gettext("Your token may not do this at the %(service)s service (%(detail)s).", service=name,
                          detail=detail or "missing scope")
    elif response.status_code == 404:
        trouble = gettext("The %(service)s service has nothing for this: %(detail)s.", service=name,
                          detail=detail or "not found")
    elif response.status_code == 503:
        trouble = gettext("The %(service)s service is not ready; try again in a moment (%(detail)s).",
                          service=name, detail=detail or "unavailable")
    elif response.status_code >= 500:
        trouble = gettext("The %(service)s service failed on this request (%(detail)s).", service=name,
                          detail=detail or response.status_code)
    else:
        trouble = gettext("The %(service)s service refused this: %(detail)s.", service=name,
                          detail=detail or response.status_code)
    return Answer(service, response.status_code, document, trouble, fields)


class Backends:
    """One HTTP client per service (connections kept), each call with the caller's token."""

    def __init__(self, urls: dict[str, str], timeout: float) -> None:
        self._clients = {name: httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout)
                         for name, url in urls.items()}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def call(self, service: str, method: str, path: str, token: str | None, *,
                   params: dict[str, Any] | None = None, json: Any = None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        clean = {key: value for key, value in (params or {}).items() if value not in (None, "")}
        name = gettext(SERVICE_NAMES[service])
        try:
            response = await self._clients[service].request(method, path, params=clean, json=json,
                                                             headers=headers)
        except httpx.TimeoutException:
            return Answer(service, None, trouble=gettext("The %(service)s service did not answer in time.",
                                                         service=name))
        except httpx.HTTPError as error:
            log.warning("%s %s%s: %s", method, service, path, error)
            trouble = gettext("The %(service)s service cannot be reached right now.", service=name)
            return Answer(service, None, trouble=trouble)
        if response.status_code >= 400:
            return _problem_answer(service, response)
        try:
            body = response.json() if response.content else None
        except ValueError:
            trouble = gettext("The %(service)s service answered something unreadable.", service=name)
            return Answer(service, response.status_code, trouble=trouble)
        return Answer(service, response.status_code, body)

    async def get(self, service: str, path: str, token: str | None, **params: Any) -> Answer:
        return await self.call(service, "GET", path, token, params=params)

    async def post(self, service: str, path: str, token: str | None, json: Any) -> Answer:
        return await self.call(service, "POST", path, token, json=json)

    async def put(self, service: str, path: str, token: str | None, json: Any) -> Answer:
        return await self.call(service, "PUT", path, token, json=json)


def segment(value: str) -> str:
    """``value`` as one path segment: an id holding ``/`` or ``..`` cannot reach another route."""
    from urllib.parse import quote

    return quote(value, safe="")
