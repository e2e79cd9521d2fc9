"""The forms a collector sends from the worklist and the customer page, each to the service
that owns the action (which audits it with the signed-in token's identity): assign a
collector, log a call, record a promise, open a payment plan, approve or reject a plan,
release a hold, acknowledge a warning.

Each form is checked for its CSRF token first and for the scope second; what the service
refuses is shown with its reason and the field it names.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console.backends import segment
from services.console.i18n import gettext as _
from services.console.sessions import Session
from services.console.web import (
    Refused,
    back_to,
    backends_of,
    checked_form,
    require,
    result_page,
    signed_in,
    today,
)
from shared.tokens import Scopes

router = APIRouter(tags=["console"])
SessionDep = Annotated[Session, Depends(signed_in)]


def _back(form: dict[str, str], default: str) -> str:
    back = form.get("back", "")
    return back if back.startswith("/") and not back.startswith("//") else default


async def _send(request: Request, session: Session, service: str, path: str, body: dict[str, object],
                back: str, done: str, *, method: str = "POST") -> Response:
    """The form's action sent to the service that owns it with the user's token: back to the page
    it came from, or the service's refusal shown."""
    answer = await backends_of(request).call(service, method, path, session.token, json=body)
    return back_to(back, done) if answer.ok else result_page(request, session, answer, back)


def parse_instalments(text: str) -> list[dict[str, str]]:
    """``2024-04-01 700.00`` per line into the plan's instalments (the line named when wrong)."""
    instalments = []
    for number, line in enumerate((line for line in text.splitlines() if line.strip()), start=1):
        parts = line.replace(",", " ").replace(";", " ").split()
        try:
            due_date, amount = parts
            Decimal(amount)
        except (ValueError, InvalidOperation):
            raise Refused(422, _("instalments, line %(number)s: write a due date and an amount, such as "
                                 "2024-04-01 700.00", number=number)) from None
        instalments.append({"due_date": due_date, "amount": amount})
    if not instalments:
        raise Refused(422, _("instalments: give at least one line (a due date and an amount)"))
    return instalments


@router.post("/customers/{customer_id}/collector")
async def assign_collector(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    return await _send(request, session, "dunning", f"/customers/{segment(customer_id)}/collector",
                       {"collector_id": form.get("collector_id", "")}, back, "assigned", method="PUT")


@router.post("/customers/{customer_id}/calls")
async def log_call(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"kind": "call", "outcome": form.get("outcome") or None, "note": form.get("note", ""),
            "occurred_on": form.get("occurred_on") or today()}
    return await _send(request, session, "dunning", f"/customers/{segment(customer_id)}/activities", body,
                       back, "call")


@router.post("/customers/{customer_id}/promises")
async def record_promise(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"promised_date": form.get("promised_date", ""), "amount": form.get("amount", "").strip(),
            "currency": form.get("currency") or None, "made_on": form.get("made_on") or None}
    return await _send(request, session, "dunning", f"/customers/{segment(customer_id)}/promises",
                       {k: v for k, v in body.items() if v is not None}, back, "promise")


@router.post("/customers/{customer_id}/plans")
async def open_plan(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"plan_id": form.get("plan_id", ""), "currency": form.get("currency", "").upper(),
            "instalments": parse_instalments(form.get("instalments", "")),
            "reason": form.get("reason", ""), "requested_on": form.get("requested_on") or None}
    return await _send(request, session, "dunning", f"/customers/{segment(customer_id)}/payment-plans",
                       {k: v for k, v in body.items() if v is not None}, back, "plan")


@router.post("/plans/{plan_id}/approve")
async def approve_plan(request: Request, plan_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_APPROVE)
    body = {"approved_on": form.get("approved_on") or today()}
    return await _send(request, session, "dunning", f"/payment-plans/{segment(plan_id)}/approve", body,
                       "/plans", "approved")


@router.post("/plans/{plan_id}/reject")
async def reject_plan(request: Request, plan_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_APPROVE)
    return await _send(request, session, "dunning", f"/payment-plans/{segment(plan_id)}/reject",
                       {"reason": form.get("reason", "")}, "/plans", "rejected")


@router.post("/holds/{hold_id}/release")
async def release_hold(request: Request, hold_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.CREDIT_OVERRIDE)
    back = _back(form, "/holds")
    return await _send(request, session, "credit", f"/holds/{segment(hold_id)}/release",
                       {"reason": form.get("reason", "")}, back, "released")


@router.post("/warnings/{warning_id}/acknowledge")
async def acknowledge_warning(request: Request, warning_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.CREDIT_WRITE)
    return await _send(request, session, "credit", f"/warnings/{segment(warning_id)}/acknowledge",
                       {"note": form.get("note", "")}, "/warnings", "acknowledged")
