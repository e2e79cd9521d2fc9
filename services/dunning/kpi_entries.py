"""The dated figures the collectors' KPIs and the statements of account are summed from
(``dunning_kpi_entries``), one event at a time.

Each row is dated by the business date it is about (``on_date``) and carries the collector
who worked the customer when the event was recorded (the one before it, for an assignment):

- ``receivable``: an invoice's open amount changed by ``amount`` (signed), with its due date:
  the portfolio's balances at any date are the sum of these up to it;
- ``unapplied``: the customer's unapplied cash changed by ``amount`` (signed), on the date the
  ledger's fact is effective: a statement's balance is the ``receivable`` rows less these;
- ``invoiced``: an invoice opened (the period's credit sales), on its issue date;
- ``collected``: what a payment took off the customer's invoices, on its effective date;
- ``promise_made``, ``promise_kept``, ``promise_broken``: a promise to pay, with its amount;
- ``plan_agreed``, ``plan_completed``, ``plan_broken``: a payment plan approved (on the day
  approved), paid off or broken, with its total;
- ``contact``: a call, e-mail, visit or letter logged, or a task done with an answer
  (``work.CONTACT_KINDS``, ``work.CONTACT_OUTCOMES``).

Pure: the projector gives the account before and after the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from services.dunning.domain import DunningAccount
from services.dunning.domain.account import PAYMENT_FACTS
from services.dunning.domain.work import CONTACT_KINDS, CONTACT_OUTCOMES

PLAN_ROWS = {"PlanAgreed": "plan_agreed", "PlanCompleted": "plan_completed", "PlanBroken": "plan_broken"}
KPI_EVENTS = frozenset({"InvoiceOpened", "OpenAmountsChanged", "DisputeClosed", "PromiseMade", "PromiseKept",
                        "PromiseBroken", "ActivityLogged", "TaskCompleted", "UnappliedCashChanged",
                        *PLAN_ROWS})
PROMISE_ROWS = {"PromiseMade": "promise_made", "PromiseKept": "promise_kept",
                "PromiseBroken": "promise_broken"}


@dataclass(frozen=True, slots=True)
class KpiBefore:
    """What the rows of an event need of the account before it."""

    collector_id: str | None
    open_amounts: dict[str, Decimal]  # of the invoices the event touches

    @classmethod
    def of(cls, account: DunningAccount | None, state: dict[str, Any]) -> KpiBefore:
        if account is None:
            return cls(None, {})
        touched = [o["invoice_id"] for o in state.get("outcomes", ())]
        invoices = account.items.invoices
        return cls(account.collector_id, {i: invoices[i].open_amount for i in touched if i in invoices})


def kpi_rows(position: int, kind: str, state: dict[str, Any], account: DunningAccount, before: KpiBefore,
             recorded_on: date) -> list[dict[str, Any]]:
    """The rows of one event of ``account`` (as the event left it)."""
    rows: list[dict[str, Any]] = []

    def add(row_kind: str, on: date | str | None, *, currency: str | None = None,
            amount: Decimal | None = None, invoice_id: str | None = None, due_date: date | None = None,
            collector_id: str | None = before.collector_id) -> None:
        on_date = date.fromisoformat(on[:10]) if isinstance(on, str) else (on or recorded_on)
        rows.append({"position": position, "seq": len(rows), "customer_id": account.customer_id,
                     "collector_id": collector_id, "kind": row_kind, "currency": currency, "amount": amount,
                     "on_date": on_date, "invoice_id": invoice_id, "due_date": due_date})

    def receivables(on: date | str | None, opened: str | None = None) -> dict[str, Decimal]:
        """A row per invoice whose open amount changed; the decrease per currency."""
        decreases: dict[str, Decimal] = {}
        ids = [o["invoice_id"] for o in state.get("outcomes", ())]
        for invoice_id in ([opened] if opened else []) + ids:
            invoice = account.items.invoices.get(invoice_id)
            if invoice is None:
                continue
            change = invoice.open_amount - before.open_amounts.get(invoice_id, Decimal(0))
            if change:
                add("receivable", on, currency=invoice.currency, amount=change, invoice_id=invoice_id,
                    due_date=invoice.due_date)
            if change < 0:
                decreases[invoice.currency] = decreases.get(invoice.currency, Decimal(0)) - change
        return decreases

    if kind == "InvoiceOpened":
        invoice = account.items.invoices[state["invoice"]["invoice_id"]]
        add("invoiced", invoice.issue_date, currency=invoice.currency, amount=invoice.amount,
            invoice_id=invoice.invoice_id, due_date=invoice.due_date)
        receivables(invoice.issue_date, opened=invoice.invoice_id)
    elif kind in ("OpenAmountsChanged", "DisputeClosed"):
        decreases = receivables(state.get("effective_date"))
        if state.get("fact_type") in PAYMENT_FACTS:
            for currency, amount in sorted(decreases.items()):
                add("collected", state.get("effective_date"), currency=currency, amount=amount)
    elif kind in ("PromiseMade", "PromiseKept", "PromiseBroken"):
        promise_id = state["promise"]["promise_id"] if kind == "PromiseMade" else state["promise_id"]
        promise = account.promises[promise_id]
        on = promise.made_on if kind == "PromiseMade" else promise.closed_on
        add(PROMISE_ROWS[kind], on, currency=promise.currency, amount=promise.amount)
    elif kind == "UnappliedCashChanged":
        add("unapplied", state.get("effective_date"), currency=state["currency"],
            amount=Decimal(state["change"]))
    elif kind in PLAN_ROWS:
        plan = account.plans[state["plan_id"]]
        on = plan.decided_on if kind == "PlanAgreed" else plan.closed_on
        add(PLAN_ROWS[kind], on, currency=plan.currency, amount=plan.total)
    elif kind == "ActivityLogged":
        activity = state["activity"]
        if activity["kind"] in CONTACT_KINDS:
            add("contact", activity["occurred_on"], collector_id=activity.get("collector_id"))
    elif kind == "TaskCompleted":
        task = account.tasks[state["task_id"]]
        if task.outcome in CONTACT_OUTCOMES:
            add("contact", task.completed_on, collector_id=task.collector_id)
    return rows
