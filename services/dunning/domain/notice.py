"""A notice as issued and stored: the contract's ``dunning.notice_issued`` payload and more.

The payload is JSON-native (money as decimal strings at the currency's minor unit, dates
ISO). Besides the contract's fields (``notice_id``, ``customer_id``, ``level``,
``channel``, ``template``, ``invoices``, ``total_due``, ``currency``, ``fees``,
``respond_by``) it carries what the audit trail needs to show what was sent and why:
``as_of``, the policy name and version, ``level_name``, every channel, the language, each
invoice's own level and interest, ``interest``, ``open_total``, ``escalate`` with the
invoices handed over, and the rendered ``text``.

``total_due`` is what the notice asks the customer to pay: the open total plus the fee and
interest; ``open_total`` alone is the receivable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from services.dunning.domain.decision import Decision
from services.dunning.domain.interest import late_interest, level_fee
from services.dunning.domain.plans import PaymentPlan
from services.dunning.domain.policy import Policy
from shared.money import ZERO, to_text

NOTICE_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:notice")
REMINDER = "instalment_reminder"  # a notice's kind (and template) reminding of an instalment


def notice_id(customer_id: str, as_of: date, currency: str) -> UUID:
    """Deterministic: one notice per customer, run date and currency, however often it is run."""
    return uuid5(NOTICE_NAMESPACE, f"{customer_id}\x1f{as_of.isoformat()}\x1f{currency}")


class Rendered(NamedTuple):
    """The text of a notice and the template and language it was rendered from."""

    template: str
    language: str
    text: str


class NoticeRenderer(Protocol):
    """Renders a notice payload (see ``services.dunning.domain.rendering.Renderer``)."""

    def __call__(self, notice: Mapping[str, Any], customer: Mapping[str, Any],
                 policy: Policy) -> Rendered: ...


def build_notice(customer_id: str, as_of: date, currency: str, decision: Decision, policy: Policy,
                 language: str) -> dict[str, Any]:
    """The notice payload for a decision (without its text)."""
    spec = policy.level(decision.level)
    lines = []
    interest_total = ZERO
    for line in decision.lines:
        interest = late_interest(line.open_amount, line.days_past_due, policy.annual_interest_percent,
                                 currency)
        interest_total += interest
        lines.append({
            "invoice_id": line.invoice_id, "open_amount": to_text(line.open_amount, currency),
            "days_past_due": line.days_past_due, "due_date": line.due_date.isoformat(),
            "level": line.level, "interest": to_text(interest, currency),
        })
    fee = level_fee(spec.fee, currency)
    escalated = [line.invoice_id for line in decision.lines
                 if spec.escalate and line.advanced and line.level == decision.level]
    return {
        "notice_id": str(notice_id(customer_id, as_of, currency)),
        "kind": "dunning",
        "customer_id": customer_id,
        "as_of": as_of.isoformat(),
        "currency": currency,
        "policy": policy.name,
        "policy_version": policy.version,
        "level": decision.level,
        "level_name": spec.name,
        "channel": spec.channel,
        "channels": list(spec.channels),
        "template": spec.template_for(language),
        "language": language,
        "invoices": lines,
        "advanced": {line.invoice_id: line.level for line in decision.lines if line.advanced},
        "open_total": to_text(decision.open_total, currency),
        "fees": to_text(fee, currency),
        "interest": to_text(interest_total, currency),
        "total_due": to_text(decision.open_total + fee + interest_total, currency),
        "respond_by": (as_of + timedelta(days=policy.respond_days(decision.level))).isoformat(),
        "escalate": spec.escalate,
        "escalated_invoices": escalated,
        "text": None,
    }


def reminder_id(customer_id: str, plan_id: str, instalment: int) -> UUID:
    """Deterministic: one reminder per instalment of a plan."""
    return uuid5(NOTICE_NAMESPACE, f"{customer_id}\x1fplan\x1f{plan_id}\x1f{instalment}")


def build_reminder(customer_id: str, as_of: date, plan: PaymentPlan, instalment: int, unpaid: Decimal,
                   lines: list[dict[str, Any]], policy: Policy, language: str) -> dict[str, Any]:
    """The ``instalment_reminder`` notice of one instalment (without its text): what is still
    owed of it and by when; the plan's open invoices are its lines, each at its own level."""
    currency = plan.currency
    due = plan.instalments[instalment - 1].due_date
    open_total = sum((Decimal(line["open_amount"]) for line in lines), ZERO)
    return {
        "notice_id": str(reminder_id(customer_id, plan.plan_id, instalment)),
        "kind": REMINDER,
        "customer_id": customer_id,
        "as_of": as_of.isoformat(),
        "currency": currency,
        "policy": policy.name,
        "policy_version": policy.version,
        "level": 0,
        "level_name": REMINDER,
        "channel": "email",
        "channels": ["email"],
        "template": REMINDER,
        "language": language,
        "invoices": lines,
        "advanced": {},
        "open_total": to_text(open_total, currency),
        "fees": to_text(ZERO, currency),
        "interest": to_text(ZERO, currency),
        "total_due": to_text(unpaid, currency),
        "respond_by": due.isoformat(),
        "escalate": False,
        "escalated_invoices": [],
        "plan_id": plan.plan_id,
        "instalment": instalment,
        "text": None,
    }
