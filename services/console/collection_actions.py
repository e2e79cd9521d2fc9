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
    answer = await backends_of(request).put("dunning", f"/customers/{segment(customer_id)}/collector",
                                            session.token, {"collector_id": form.get("collector_id", "")})
    return back_to(back, "assigned") if answer.ok else result_page(request, session, answer, back)


@router.post("/customers/{customer_id}/calls")
async def log_call(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"kind": "call", "outcome": form.get("outcome") or None, "note": form.get("note", ""),
            "occurred_on": form.get("occurred_on") or today()}
    answer = await backends_of(request).post("dunning", f"/customers/{segment(customer_id)}/activities",
                                             session.token, body)
    return back_to(back, "call") if answer.ok else result_page(request, session, answer, back)


@router.post("/customers/{customer_id}/promises")
async def record_promise(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"promised_date": form.get("promised_date", ""), "amount": form.get("amount", "").strip(),
            "currency": form.get("currency") or None, "made_on": form.get("made_on") or None}
    answer = await backends_of(request).post("dunning", f"/customers/{segment(customer_id)}/promises",
                                             session.token, {k: v for k, v in body.items() if v is not None})
    return back_to(back, "promise") if answer.ok else result_page(request, session, answer, back)


@router.post("/customers/{customer_id}/plans")
async def open_plan(request: Request, customer_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_WRITE)
    back = _back(form, "/worklist")
    body = {"plan_id": form.get("plan_id", ""), "currency": form.get("currency", "").upper(),
            "instalments": parse_instalments(form.get("instalments", "")),
            "reason": form.get("reason", ""), "requested_on": form.get("requested_on") or None}
    answer = await backends_of(request).post("dunning", f"/customers/{segment(customer_id)}/payment-plans",
                                             session.token, {k: v for k, v in body.items() if v is not None})
    return back_to(back, "plan") if answer.ok else result_page(request, session, answer, back)


@router.post("/plans/{plan_id}/approve")
async def approve_plan(request: Request, plan_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_APPROVE)
    body = {"approved_on": form.get("approved_on") or today()}
    answer = await backends_of(request).post("dunning", f"/payment-plans/{segment(plan_id)}/approve",
                                             session.token, body)
    return back_to("/plans", "approved") if answer.ok else result_page(request, session, answer, "/plans")


@router.post("/plans/{plan_id}/reject")
async def reject_plan(request: Request, plan_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.DUNNING_APPROVE)
    answer = await backends_of(request).post("dunning", f"/payment-plans/{segment(plan_id)}/reject",
                                             session.token, {"reason": form.get("reason", "")})
    return back_to("/plans", "rejected") if answer.ok else result_page(request, session, answer, "/plans")


@router.post("/holds/{hold_id}/release")
async def release_hold(request: Request, hold_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.CREDIT_OVERRIDE)
    back = _back(form, "/holds")
    answer = await backends_of(request).post("credit", f"/holds/{segment(hold_id)}/release", session.token,
                                             {"reason": form.get("reason", "")})
    return back_to(back, "released") if answer.ok else result_page(request, session, answer, back)


@router.post("/warnings/{warning_id}/acknowledge")
async def acknowledge_warning(request: Request, warning_id: str, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require(session, Scopes.CREDIT_WRITE)
    answer = await backends_of(request).post("credit", f"/warnings/{segment(warning_id)}/acknowledge",
                                             session.token, {"note": form.get("note", "")})
    return back_to("/warnings", "acknowledged") if answer.ok else result_page(request, session, answer,
                                                                              "/warnings")
