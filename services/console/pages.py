"""The console's read pages: worklist, customer, warnings and watchlist, holds, policies, plans.

Each asks the owning services in parallel with the signed-in token and renders what came
back; a service that failed leaves its part empty with a sentence saying why. Buttons are
drawn only for the scopes the token holds (``can`` in the templates).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.console.backends import Answer, segment
from services.console.dates import BadInput, as_date
from services.console.sessions import Session
from services.console.web import backends_of, render, signed_in, today

router = APIRouter(tags=["console"])
SessionDep = Annotated[Session, Depends(signed_in)]

OUTCOMES = ("reached", "no_answer", "left_message", "promised", "disputed", "refused", "wrong_contact")


def _troubles(*answers: Answer) -> list[Answer]:
    return [answer for answer in answers if not answer.ok]


def _bad_date(request: Request, session: Session, template: str, error: BadInput) -> HTMLResponse:
    return render(request, template, session, status=422, message=str(error))


@router.get("/worklist", response_class=HTMLResponse)
async def worklist(request: Request, session: SessionDep) -> HTMLResponse:
    query = request.query_params
    try:
        as_of = as_date("as_of", query.get("as_of"), today())
    except BadInput as error:
        return _bad_date(request, session, "worklist.html", error)
    collector = query.get("collector_id") or None
    backends = backends_of(request)
    rows, collectors = await asyncio.gather(
        backends.get("dunning", "/worklist", session.token, as_of=as_of, collector_id=collector),
        backends.get("dunning", "/collectors", session.token),
    )
    return render(request, "worklist.html", session, troubles=_troubles(rows, collectors), as_of=as_of,
                  collector_id=collector, rows=rows.body["customers"] if rows.ok else None,
                  predictions=rows.body.get("predictions") if rows.ok else None,
                  collectors=collectors.body["collectors"] if collectors.ok else [],
                  outcomes=OUTCOMES, new_plan_id=lambda: f"PLAN-{uuid.uuid4().hex[:12].upper()}")


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer(request: Request, customer_id: str, session: SessionDep) -> HTMLResponse:
    try:
        as_of = as_date("as_of", request.query_params.get("as_of"), today())
    except BadInput as error:
        return _bad_date(request, session, "customer.html", error)
    backends, token, path = backends_of(request), session.token, f"/customers/{segment(customer_id)}"
    balance, items, predictions, dunning, timeline, plans, credit, warnings = await asyncio.gather(
        backends.get("ledger", f"{path}/balance", token, as_of=as_of),
        backends.get("ledger", f"{path}/open-items", token, as_of=as_of),
        backends.get("ledger", f"{path}/predictions", token, as_of=as_of),
        backends.get("dunning", f"{path}/dunning", token),
        backends.get("dunning", f"{path}/timeline", token, limit=50),
        backends.get("dunning", f"{path}/payment-plans", token),
        backends.get("credit", f"{path}/credit", token, as_of=as_of),
        backends.get("credit", "/warnings", token, customer_id=customer_id, status="open"),
    )
    # A customer a service has never heard of is a 404 there: said once, not as a failure.
    troubles = [answer for answer in _troubles(balance, items, dunning, timeline, plans, credit, warnings)
                if answer.status != 404]
    timeline_rows = timeline.body if timeline.ok else None
    if isinstance(timeline_rows, dict):
        timeline_rows = timeline_rows.get("entries") or timeline_rows.get("items")
    return render(
        request, "customer.html", session, troubles=troubles, customer_id=customer_id, as_of=as_of,
        balance=balance.body if balance.ok else None, items=items.body if items.ok else None,
        predictions=predictions.body if predictions.ok else None, predictions_trouble=predictions.trouble,
        dunning=dunning.body if dunning.ok else None, timeline=timeline_rows,
        plans=plans.body if plans.ok else None, credit=credit.body if credit.ok else None,
        warnings=warnings.body["warnings"] if warnings.ok else None, outcomes=OUTCOMES,
        unknown=all(answer.status == 404 for answer in (balance, dunning, credit)),
        new_plan_id=lambda: f"PLAN-{uuid.uuid4().hex[:12].upper()}",
    )


@router.get("/warnings", response_class=HTMLResponse)
async def warnings(request: Request, session: SessionDep) -> HTMLResponse:
    status = request.query_params.get("status") or "open"
    backends = backends_of(request)
    found, watchlist = await asyncio.gather(
        backends.get("credit", "/warnings", session.token, status=status,
                     severity=request.query_params.get("severity")),
        backends.get("credit", "/watchlist", session.token),
    )
    return render(request, "warnings.html", session, troubles=_troubles(found, watchlist),
                  shown_status=status,
                  warnings=found.body["warnings"] if found.ok else None,
                  watchlist=watchlist.body["customers"] if watchlist.ok else None)


@router.get("/holds", response_class=HTMLResponse)
async def holds(request: Request, session: SessionDep) -> HTMLResponse:
    found = await backends_of(request).get("credit", "/holds", session.token)
    active = [hold for hold in found.body["holds"] if hold["status"] == "active"] if found.ok else None
    return render(request, "holds.html", session, troubles=_troubles(found), holds=active)


@router.get("/policies", response_class=HTMLResponse)
async def policies(request: Request, session: SessionDep) -> HTMLResponse:
    found = await backends_of(request).get("dunning", "/policies", session.token)
    return render(request, "policies.html", session, troubles=_troubles(found),
                  policies=found.body["policies"] if found.ok else None)


@router.get("/plans", response_class=HTMLResponse)
async def plans(request: Request, session: SessionDep) -> HTMLResponse:
    found = await backends_of(request).get("dunning", "/payment-plans", session.token, status="requested")
    return render(request, "plans.html", session, troubles=_troubles(found),
                  plans=found.body["plans"] if found.ok else None)
