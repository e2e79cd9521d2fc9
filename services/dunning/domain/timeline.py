"""A customer's timeline: everything the dunning service knows of it, one entry an event of
its account, newest first (no I/O, no clock).

Each entry is ``{at, kind, summary, data, recorded_at}``: ``at`` is the business date the
entry is about (a notice's date, a task's due or completion date, an activity's date, a
payment's effective date); where the event names none (an assignment, a dispute opened, a
risk grade, a profile) it is the date it was recorded. Entries are ordered by ``at``, then
by the order the account recorded them, newest first. ``page`` gives a page and the cursor of
the entries after it (the service answers it in ``X-Next-Cursor``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    at: str  # ISO date
    version: int  # of the account's event: the order recorded
    kind: str
    summary: str
    data: dict[str, Any]
    recorded_at: str

    @property
    def cursor(self) -> str:
        return f"{self.at}~{self.version}"

    def view(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "summary": self.summary, "data": self.data,
                "recorded_at": self.recorded_at}


class BadCursor(ValueError):
    """A cursor no page of a timeline gave."""


def page(events: Iterable[Any], *, limit: int, cursor: str | None = None) -> tuple[list[Entry], str | None]:
    """A page of the timeline of these events (the account's, in order): up to ``limit`` entries
    after ``cursor`` (None: from the newest), and the cursor of the next page (None: no more)."""
    after = _parse(cursor) if cursor is not None else None
    entries = sorted((e for e in map(entry, events) if e is not None),
                     key=lambda e: (e.at, e.version), reverse=True)
    if after is not None:
        entries = [e for e in entries if (e.at, e.version) < after]
    shown = entries[:limit]
    return shown, shown[-1].cursor if len(entries) > limit else None


def _parse(cursor: str) -> tuple[str, int]:
    at, _, version = cursor.partition("~")
    if len(at) != 10 or not version.isdigit():
        raise BadCursor(f"cursor: {cursor[:40]!r} is not a cursor a page of this timeline gave")
    return at, int(version)


def entry(event: Any) -> Entry | None:
    """The timeline entry of one of the account's events (None: not one to show)."""
    describe = _DESCRIBE.get(type(event).__name__)
    if describe is None:
        return None
    recorded = event.timestamp
    kind, at, summary, data = describe(event)
    return Entry(at or recorded.date().isoformat(), event.originator_version, kind, summary, data,
                 recorded.isoformat())


Described = tuple[str, str | None, str, dict[str, Any]]  # kind, at, summary, data


def _money(amount: str, currency: str) -> str:
    return f"{amount} {currency}"  # (as the events record it: the contract's decimal string)


def _invoice_opened(e: Any) -> Described:
    i = e.invoice
    return ("invoice_opened", i["issue_date"],
            f"Invoice {i['invoice_id']} of {_money(i['amount'], i['currency'])}, due {i['due_date']}",
            {"invoice_id": i["invoice_id"], "amount": i["amount"], "currency": i["currency"],
             "due_date": i["due_date"]})


def _outcomes(outcomes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{o['invoice_id']} {o['status'].replace('_', ' ')} ({o['open_amount']} open)"
                     for o in outcomes)


def _open_amounts_changed(e: Any) -> Described:
    fact = getattr(e, "fact_type", None)
    kind = {"ledger.payment_applied": "payment", "ledger.prepayment_applied": "payment"}.get(
        fact or "", "invoices_changed")
    what = "Payment applied" if kind == "payment" else "Invoices changed"
    return (kind, e.effective_date[:10] if e.effective_date else None, f"{what}: {_outcomes(e.outcomes)}",
            {"outcomes": e.outcomes, "fact": fact})


def _dispute_opened(e: Any) -> Described:
    return ("dispute_opened", None, f"Dispute {e.dispute_id} on {e.invoice_id} for {e.amount}",
            {"dispute_id": e.dispute_id, "invoice_id": e.invoice_id, "amount": e.amount})


def _dispute_closed(e: Any) -> Described:
    return ("dispute_closed", e.effective_date[:10] if e.effective_date else None,
            f"Dispute {e.dispute_id} closed: {e.outcome}",
            {"dispute_id": e.dispute_id, "outcome": e.outcome, "outcomes": e.outcomes})


def _notice(e: Any) -> Described:
    n = e.notice
    return ("notice", n["as_of"],
            f"Level {n['level']} notice ({n['level_name']}) by {', '.join(n['channels'])}: "
            f"{_money(n['total_due'], n['currency'])} due",
            {"notice_id": n["notice_id"], "level": n["level"], "channel": n["channel"],
             "currency": n["currency"], "total_due": n["total_due"],
             "invoice_ids": [line["invoice_id"] for line in n["invoices"]]})


def _promise_made(e: Any) -> Described:
    p = e.promise
    return ("promise_made", p["made_on"],
            f"Promise to pay {_money(p['amount'], p['currency'])} by {p['promised_date']}",
            {k: p[k] for k in ("promise_id", "amount", "currency", "promised_date", "invoice_ids")})


def _promise_closed(status: str, on: str) -> Callable[[Any], Described]:
    def describe(e: Any) -> Described:
        return (f"promise_{status}", getattr(e, on), f"Promise {e.promise_id} {status}",
                {"promise_id": e.promise_id})
    return describe


def _plan_requested(e: Any) -> Described:
    p = e.plan
    total = sum(Decimal(i["amount"]) for i in p["instalments"])
    return ("plan_requested", p["requested_on"],
            f"Payment plan {p['plan_id']} asked for by {p['requested_by']}: {len(p['instalments'])} "
            f"instalments, {total} {p['currency']} in all",
            {k: p[k] for k in ("plan_id", "currency", "invoice_ids", "instalments", "reason",
                               "requested_by")})


def _plan_decided(e: Any) -> Described:
    agreed = type(e).__name__ == "PlanAgreed"
    summary = f"Payment plan {e.plan_id} {'approved' if agreed else 'rejected'} by {e.actor}"
    data = {"plan_id": e.plan_id, "by": e.actor}
    if not agreed:
        summary += f": {e.reason}"
        data["reason"] = e.reason
    return ("plan_agreed" if agreed else "plan_rejected", e.on, summary, data)


def _plan_ended(status: str) -> Callable[[Any], Described]:
    def describe(e: Any) -> Described:
        on = e.as_of if status == "broken" else e.on
        why = f" (instalment {e.instalment} not paid)" if status == "broken" else ""
        return (f"plan_{status}", on, f"Payment plan {e.plan_id} {status}{why}", {"plan_id": e.plan_id})
    return describe


def _reminder(e: Any) -> Described:
    n = e.notice
    return ("instalment_reminder", n["as_of"],
            f"Reminder of instalment {n['instalment']} of plan {n['plan_id']}: "
            f"{_money(n['total_due'], n['currency'])} due {n['respond_by']}",
            {"notice_id": n["notice_id"], "plan_id": n["plan_id"], "instalment": n["instalment"],
             "total_due": n["total_due"], "currency": n["currency"]})


def _statement(e: Any) -> Described:
    st = e.statement
    asks = ", asking to confirm the balance" if st["confirmation_requested"] else ""
    return ("statement", st["as_of"],
            f"Statement {st['period_from']} to {st['period_to']}: balance "
            f"{_money(st['closing_balance'], st['currency'])}{asks}",
            {k: st[k] for k in ("statement_id", "currency", "period_from", "period_to", "opening_balance",
                                "closing_balance", "unapplied_cash", "confirmation_requested")})


def _statement_answered(e: Any) -> Described:
    a = e.answer
    if a["response"] == "confirmed":
        summary = f"Balance {_money(a['statement_balance'], a['currency'])} confirmed"
    else:
        summary = (f"Balance disputed: the customer sees {_money(a['balance'], a['currency'])}, "
                   f"the statement says {a['statement_balance']}")
    if a["note"]:
        summary += f" ({a['note']})"
    return (f"balance_{a['response']}", a["responded_on"], summary, dict(a))


def _task_created(e: Any) -> Described:
    kind = "phone call" if e.kind == "phone_task" else "visit"
    return ("task_created", e.due_on, f"Task: {kind} for {e.collector_id or 'no collector'}",
            {"task_id": e.task_id, "notice_id": e.notice_id, "kind": e.kind, "collector_id": e.collector_id})


def _task_completed(e: Any) -> Described:
    return ("task_completed", e.completed_on,
            f"Task done: {e.outcome.replace('_', ' ')}" + (f" ({e.note})" if e.note else ""),
            {"task_id": e.task_id, "outcome": e.outcome, "note": e.note, "completed_by": e.actor})


def _activity(e: Any) -> Described:
    a = e.activity
    outcome = f" ({a['outcome'].replace('_', ' ')})" if a.get("outcome") else ""
    return ("activity", a["occurred_on"], f"{a['kind'].capitalize()}{outcome}: {a['note']}", dict(a))


def _assigned(e: Any) -> Described:
    who = e.collector_id or "nobody"
    how = f"by hand ({e.actor})" if e.by == "manual" else (
        f"by rule {e.rule} of version {e.rules_version}" if e.rule is not None else "no rule matches")
    return ("assignment", None, f"Collector: {who}, {how}",
            {"collector_id": e.collector_id, "by": e.by, "rule": e.rule, "rules_version": e.rules_version,
             "actor": e.actor})


def _graded(e: Any) -> Described:
    return ("risk_grade", None, f"Risk grade {e.grade or 'none'} (from credit)", {"grade": e.grade})


def _profile(e: Any) -> Described:
    return ("profile", None, "Customer profile updated", {"name": e.profile.get("name")})


_DESCRIBE: dict[str, Callable[[Any], Described]] = {
    "InvoiceOpened": _invoice_opened,
    "OpenAmountsChanged": _open_amounts_changed,
    "DisputeOpened": _dispute_opened,
    "DisputeClosed": _dispute_closed,
    "NoticeIssued": _notice,
    "PromiseMade": _promise_made,
    "PromiseKept": _promise_closed("kept", "kept_on"),
    "PromiseBroken": _promise_closed("broken", "as_of"),
    "PlanRequested": _plan_requested,
    "PlanAgreed": _plan_decided,
    "PlanRejected": _plan_decided,
    "PlanBroken": _plan_ended("broken"),
    "PlanCompleted": _plan_ended("completed"),
    "PlanCancelled": _plan_ended("cancelled"),
    "InstalmentReminded": _reminder,
    "StatementIssued": _statement,
    "StatementAnswered": _statement_answered,
    "TaskCreated": _task_created,
    "TaskCompleted": _task_completed,
    "ActivityLogged": _activity,
    "CollectorAssigned": _assigned,
    "RiskGraded": _graded,
    "ProfileUpdated": _profile,
}
