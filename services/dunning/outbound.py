"""Dunning events to ``ar.dunning.actions`` (contract: dunning.notice_issued, .escalated, .paused,
.resumed).

- ``NoticeIssued`` → ``dunning.notice_issued`` (the contract's fields and the audit extras
  of the notice, see ``notice_message``), and ``dunning.escalated`` when the notice hands
  invoices to collections;
- ``InstalmentReminded`` → ``dunning.notice_issued`` of kind ``instalment_reminder``;
- ``PlanRequested``, ``PlanAgreed``, ``PlanRejected``, ``PlanBroken``, ``PlanCompleted``,
  ``PlanCancelled`` → ``dunning.plan_requested``, ``.plan_agreed``, ``.plan_rejected``,
  ``.plan_broken``, ``.plan_completed``, ``.plan_cancelled``: the plan as it then stands;
- ``StatementIssued`` → ``dunning.statement_issued``; ``StatementAnswered`` →
  ``dunning.balance_confirmed`` or ``dunning.balance_disputed``;
- ``PromiseMade`` → ``dunning.paused``; ``PromiseBroken`` → ``dunning.resumed`` (reason
  ``promise_broken``: dunning goes on at the next level); ``PromiseKept`` →
  ``dunning.resumed`` (reason ``promise_kept``: the pause ends, whatever is still open is
  dunned again).

Ids are derived from the stored event (account id, version, index), so a re-sent message
has the same id and consumers dedupe on ``id``; the key is the customer id.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.dunning.domain import DunningAccount
from shared.envelope import encode_event
from shared.eventstore import TrackedApplication
from shared.money import ZERO, to_text
from shared.outbox import Outbound

TOPIC = "ar.dunning.actions"
SOURCE = "receivables/dunning"

# The notice's internal bookkeeping, not part of what is published or served.
_INTERNAL = ("advanced",)


PLAN_MESSAGES = {"PlanRequested": "dunning.plan_requested", "PlanAgreed": "dunning.plan_agreed",
                 "PlanRejected": "dunning.plan_rejected", "PlanBroken": "dunning.plan_broken",
                 "PlanCompleted": "dunning.plan_completed", "PlanCancelled": "dunning.plan_cancelled"}


def notice_message(notice: dict[str, Any]) -> dict[str, Any]:
    """A stored notice as published (``dunning.notice_issued``) and served (``POST /runs``); one
    stored before notices had kinds is a dunning notice."""
    return {"kind": "dunning", **{k: v for k, v in notice.items() if k not in _INTERNAL}}


def escalation_message(notice: dict[str, Any]) -> dict[str, Any]:
    escalated = set(notice["escalated_invoices"])
    invoices = [line for line in notice["invoices"] if line["invoice_id"] in escalated]
    return {
        "customer_id": notice["customer_id"], "notice_id": notice["notice_id"], "as_of": notice["as_of"],
        "level": notice["level"], "level_name": notice["level_name"], "currency": notice["currency"],
        "invoices": invoices, "handed_to": "collections",
        "open_amount": to_text(sum((Decimal(line["open_amount"]) for line in invoices), ZERO),
                               notice["currency"]),
    }


def promise_message(customer_id: str, promise: Any) -> dict[str, Any]:
    view = DunningAccount._promise_view(promise)
    return {"customer_id": customer_id, **view}


def make_translate(app: TrackedApplication) -> Callable[[Any], list[Outbound]]:
    """The relay's translation for ``app``'s events (promise events read their account)."""

    def account_at(event: Any) -> DunningAccount:
        account: DunningAccount = app.repository.get(event.originator_id, version=event.originator_version)
        return account

    def translate(event: Any) -> list[Outbound]:
        kind = type(event).__qualname__
        messages: list[tuple[str, str, dict[str, Any]]] = []  # (customer, type, data)
        name = kind.rpartition(".")[2]
        if name in PLAN_MESSAGES and kind.startswith("DunningAccount."):
            account = account_at(event)
            plan_id = event.plan["plan_id"] if name == "PlanRequested" else event.plan_id
            messages.append((account.customer_id, PLAN_MESSAGES[name], account.plan_view(plan_id) or {}))
        elif kind == "DunningAccount.StatementIssued":
            statement = event.statement
            messages.append((statement["customer_id"], "dunning.statement_issued", statement))
        elif kind == "DunningAccount.StatementAnswered":
            account = account_at(event)
            answer = {k: v for k, v in event.answer.items() if k != "recorded_by"}
            messages.append((account.customer_id, f"dunning.balance_{answer['response']}",
                             {"customer_id": account.customer_id, **answer}))
        elif kind in ("DunningAccount.NoticeIssued", "DunningAccount.InstalmentReminded"):
            notice = event.notice
            messages.append((notice["customer_id"], "dunning.notice_issued", notice_message(notice)))
            if notice["escalate"] and notice["escalated_invoices"]:
                messages.append((notice["customer_id"], "dunning.escalated", escalation_message(notice)))
        elif kind == "DunningAccount.PromiseMade":
            account = account_at(event)
            promise = account.promises[event.promise["promise_id"]]
            messages.append((account.customer_id, "dunning.paused",
                             promise_message(account.customer_id, promise)))
        elif kind in ("DunningAccount.PromiseBroken", "DunningAccount.PromiseKept"):
            account = account_at(event)
            promise = account.promises[event.promise_id]
            reason = "promise_broken" if kind.endswith("Broken") else "promise_kept"
            messages.append((account.customer_id, "dunning.resumed",
                             {**promise_message(account.customer_id, promise), "reason": reason}))
        prefix = f"{event.originator_id}:{event.originator_version}"
        return [
            Outbound(TOPIC, customer_id, encode_event(
                event_id=f"dunning:{prefix}:{index}", source=SOURCE, event_type=event_type,
                subject=customer_id, data=data, time=event.timestamp,
            ))
            for index, (customer_id, event_type, data) in enumerate(messages)
        ]

    return translate
