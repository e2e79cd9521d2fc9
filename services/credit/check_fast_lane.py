"""``POST /credit-checks`` on a lane of its own, ahead of the framework's per-request machinery.

Order entry asks for a check on every order, so this route is the service's hot path. Past
uvicorn, the framework's per-request work (its middleware, the routing, the request object,
the route's wrapper) costs about two thirds of what the benchmark's trivial FastAPI endpoint
costs, and more than deciding and saving the check (docs/benchmarks-history.md, credit checks). This ASGI
middleware answers a plain check itself: a JSON body (``application/json``) from a caller
holding ``credit:check``, that fits ``CheckIn``. Every other request, and every request to
another route, goes on to the FastAPI app unchanged (the body it read is handed on), so each
error is the problem the route gives; the route stays the documented one (OpenAPI) and the
reference that tests hold the lane to.

It sits inside the app's error middleware (``app.add_middleware``), so an unexpected error
is the same 500 problem as on any route. ``RECEIVABLES_CREDIT_CHECK_FAST_LANE=false`` leaves it
out (every check then goes through the route; ``python -m bench.credit --lane off``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.credit.api import CREDIT_PROBLEMS, CheckIn
from services.credit.domain import CreditError
from shared.auth import AuthState, bearer_token
from shared.business_dates import today_utc
from shared.problems import problem_response
from shared.tokens import Scopes

PATH = "/credit-checks"
_JSON = (b"content-type", b"application/json")


class CheckFastLane:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        check = _plain_check(scope, body) if more is None else None
        if check is None:
            await self.app(scope, _replaying(body, more, receive), send)
            return
        desk = scope["app"].state.desk
        try:
            answer = await desk.check(check.customer_id, check.order_id, check.amount, check.currency,
                                      check.on or today_utc())
        except CreditError as error:
            await problem_response(CREDIT_PROBLEMS.problem(error), PATH)(scope, receive, send)
            return
        # the two messages Starlette's Response(media_type="application/json") sends
        answer_body = orjson.dumps(answer)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer_body)).encode()), _JSON]})
        await send({"type": "http.response.body", "body": answer_body})


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The request's body, and the message that ended the reading early (a disconnect), if any."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replaying(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands on the body already read (then what ended it), then the rest."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": ended is not None}]
    if ended is not None:
        pending.append(ended)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _plain_check(scope: Scope, body: bytes) -> CheckIn | None:
    """The check, when the request is one the lane answers; None sends it on to the route."""
    content_type = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:  # the first, as Starlette reads it
            content_type = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if content_type != b"application/json" or not _authorized(scope, authorization):
        return None
    try:
        check = CheckIn.model_validate(orjson.loads(body), from_attributes=True)  # as the route validates
    except ValueError:  # orjson's and pydantic's errors both are
        return None
    # a dated check goes to the route, which refuses a date ahead of the clock
    return check if check.on is None or check.on <= today_utc() else None


def _authorized(scope: Scope, authorization: bytes | None) -> bool:
    state: Any = getattr(scope["app"].state, "auth", None)
    if not isinstance(state, AuthState):
        return False  # the route fails closed
    token = bearer_token(authorization.decode("latin-1") if authorization is not None else None)
    principal = state.principal(token)
    return principal is not None and principal.has(Scopes.CREDIT_CHECK)
