"""The dunning API's answers as its OpenAPI document declares them.

The routes answer plain dicts; these models only describe them, so that a client and the
schema fuzzer know every figure's type: money is a decimal string, dates are ISO dates.
More members than listed may come (``extra="allow"``). Policies are answered as the
domain's ``Policy`` (its serialized form).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, RootModel

from services.dunning.domain import Policy
from services.dunning.domain.collectors import AssignmentRule, Collector
from shared.values import AnswerAmount


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class NoticeLineOut(_Answer):
    invoice_id: str
    open_amount: AnswerAmount
    days_past_due: int


class NoticeOut(_Answer):
    notice_id: str
    customer_id: str
    as_of: date
    level: int
    channel: str
    template: str
    invoices: list[NoticeLineOut]
    total_due: AnswerAmount
    currency: str
    fees: AnswerAmount
    respond_by: date


class ListedNoticeOut(NoticeOut):
    status: str


class NoticesOut(_Answer):
    notices: list[ListedNoticeOut]


class RunOut(_Answer):
    run_id: str
    as_of: date
    notices: list[NoticeOut]
    repeat: bool


class WorklistRowOut(_Answer):
    customer_id: str
    collector_id: str | None
    currency: str
    overdue_amount: AnswerAmount
    amount_at_risk: AnswerAmount
    level: int
    invoices: int
    oldest_due_date: date
    days_past_due: int
    max_days_past_due: int
    escalated: bool
    open_tasks: int
    broken_promises_90d: int
    last_contact_on: date | None
    next_action_on: date | None
    expected_loss: AnswerAmount | None = None  # where the ledger predicts (the order then)
    predicted_days_late: int | None = None


class WorklistPredictionsOut(_Answer):
    used: bool
    model_version: str | None = None
    reason: str | None = None  # why the ledger's predictions are not used


class WorklistOut(_Answer):
    as_of: date
    predictions: WorklistPredictionsOut
    customers: list[WorklistRowOut]


class PromiseOut(_Answer):
    customer_id: str
    promise_id: str
    currency: str
    amount: AnswerAmount
    made_on: date
    promised_date: date
    paused_until: date
    invoice_ids: list[str]
    status: str


class InvoiceLevelOut(_Answer):
    invoice_id: str
    currency: str
    due_date: date
    open_amount: AnswerAmount
    disputed_amount: AnswerAmount
    level: int


class SentNoticeOut(_Answer):
    notice_id: str
    as_of: date
    currency: str
    level: int
    total_due: AnswerAmount


class DunningViewOut(_Answer):
    customer_id: str
    policy: str | None
    collector_id: str | None
    assigned_by: Literal["rule", "manual"] | None
    invoices: list[InvoiceLevelOut]
    notices: list[SentNoticeOut]
    promises: list[dict[str, Any]]
    last_run_on: date | None
    next_action_on: date | None


class PoliciesOut(_Answer):
    policies: list[Policy]


class CollectorsOut(_Answer):
    collectors: list[Collector]


class RulesOut(_Answer):
    version: int
    rules: list[AssignmentRule]


class AssignmentOut(_Answer):
    customer_id: str
    collector_id: str | None
    assigned_by: Literal["rule", "manual"] | None


class TaskOut(_Answer):
    task_id: str
    customer_id: str
    notice_id: str
    kind: Literal["phone_task", "visit_task"]
    due_on: date
    collector_id: str | None
    status: Literal["open", "done"]
    outcome: str | None
    note: str | None
    completed_on: date | None


class TasksOut(RootModel[list[TaskOut]]):
    """The contract's answer: the tasks themselves, a JSON array."""


class ActivityOut(_Answer):
    customer_id: str
    activity_id: str
    kind: str
    outcome: str | None
    note: str
    occurred_on: date
    collector_id: str | None


class TimelineEntryOut(_Answer):
    at: date
    kind: str
    summary: str
    data: dict[str, Any]


class TimelineOut(RootModel[list[TimelineEntryOut]]):
    """The contract's "one list", newest first; the next page's cursor in the ``X-Next-Cursor``
    header (and a ``Link`` header with ``rel="next"``), absent on the last page."""


class CurrencyKpisOut(_Answer):
    currency: str
    overdue_amount: AnswerAmount
    collected_amount: AnswerAmount
    cei: str | None
    average_days_delinquent: str | None


class KpisOut(_Answer):
    collector_id: str | None
    accounts: int
    promises_made: int
    promises_kept: int
    promises_broken: int
    kept_rate: str | None
    plans_agreed: int
    plans_completed: int
    plans_broken: int
    contacts: int
    currencies: list[CurrencyKpisOut]


class InstalmentOut(_Answer):
    due_date: date
    amount: AnswerAmount
    unpaid: AnswerAmount


class PlanOut(_Answer):
    plan_id: str
    customer_id: str
    currency: str
    status: Literal["requested", "active", "completed", "broken", "rejected", "cancelled"]
    invoice_ids: list[str]
    instalments: list[InstalmentOut]
    total: AnswerAmount
    paid: AnswerAmount
    requested_on: date
    reason: str
    requested_by: str
    decided_on: date | None
    decided_by: str | None
    rejection_reason: str | None
    closed_on: date | None
    broken_instalment: int | None


class PlansOut(_Answer):
    plans: list[PlanOut]


class StatementItemOut(_Answer):
    invoice_id: str
    due_date: date
    open_amount: AnswerAmount


class StatementOut(_Answer):
    statement_id: str
    customer_id: str
    as_of: date
    currency: str
    period_from: date
    period_to: date
    opening_balance: AnswerAmount
    closing_balance: AnswerAmount
    open_items: list[StatementItemOut]
    unapplied_cash: AnswerAmount
    confirmation_requested: bool
    text: str | None


class StatementRunOut(_Answer):
    statement_run_id: str
    as_of: date
    period_from: date
    period_to: date
    repeat: bool
    statements: list[StatementOut]


class StatementsOut(_Answer):
    customer_id: str
    statements: list[StatementOut]


class ConfirmationOut(_Answer):
    customer_id: str
    statement_id: str
    currency: str
    response: Literal["confirmed", "disputed"]
    statement_balance: AnswerAmount
    balance: AnswerAmount
    difference: AnswerAmount
    note: str
    responded_on: date
