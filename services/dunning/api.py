"""The dunning service's REST surface: policies, runs, promises, notices, the worklist, health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Concatenate, Literal, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Engine

from services.dunning import queries
from services.dunning.api_answers import (
    ActivityOut,
    AssignmentOut,
    CollectorsOut,
    DunningViewOut,
    KpisOut,
    NoticesOut,
    PoliciesOut,
    PromiseOut,
    RulesOut,
    RunOut,
    TaskOut,
    TasksOut,
    TimelineOut,
    WorklistOut,
)
from services.dunning.application import DunningApplication
from services.dunning.domain import Policy, timeline
from services.dunning.domain.collectors import (
    MAX_RULES,
    AssignmentRule,
    Collector,
    CollectorBook,
    Email,
    UnknownCollector,
)
from services.dunning.domain.errors import (
    AlreadyPromised,
    CurrencyMismatch,
    DunningError,
    InvalidConfirmation,
    InvalidPlan,
    InvalidPromise,
    InvoiceNotOpen,
    PlanConflict,
    PlanNotRequested,
    SelfApproval,
    TaskNotOpen,
    UnknownInvoice,
    UnknownPlan,
    UnknownStatement,
    UnknownTask,
)
from services.dunning.domain.policy import MAX_LEVELS
from services.dunning.domain.registry import RunOutOfOrder, resolve
from services.dunning.domain.work import ActivityKind, Outcome
from services.dunning.runs import DunningRunner
from shared.auth import DunningReader, DunningWriter
from shared.business_dates import given_or_today, not_ahead_of_clock, today_utc
from shared.collection_figures import collection_figures, rounded
from shared.dates import BusinessDate
from shared.db import BIGINT_MAX
from shared.dependencies import EngineDep, WriterDep, from_state
from shared.ledger_predictions import Outlooks
from shared.money import ZERO, to_text
from shared.openapi import answers_with
from shared.problems import REQUEST_INVALID, DomainProblems, Problem, field_name, field_problem, not_found
from shared.scheduling import ReadModelsBehind
from shared.values import (
    CURRENCY_PATTERN,
    NO_NUL,
    POLICY_NAME_PATTERN,
    Channel,
    Name,
    RequestAmount,
    RequestId,
)

PolicyName = Annotated[str, Path(pattern=POLICY_NAME_PATTERN)]
CollectorId = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
# A count of days in a policy: ten years either way is beyond any dunning.
Days = Annotated[int, Field(ge=-3660, le=3660)]
DaysAfter = Annotated[int, Field(ge=0, le=3660)]


AppDep = Annotated[DunningApplication, Depends(from_state("dunning"))]
RunnerDep = Annotated[DunningRunner, Depends(from_state("runner"))]

router = APIRouter()
WORKLIST_CANDIDATES = 3  # with predictions, the worklist re-orders this many pages by amount at risk
P = ParamSpec("P")
R = TypeVar("R")

# The one mapping of the dunning domain's refusals to problems (installed on the app by
# ``services.dunning.service``); a field is named as the request names it.
DUNNING_PROBLEMS = DomainProblems(
    kinds={
        DunningError: (409, "dunning-refused"),
        InvalidPromise: (422, "validation-error"),
        InvalidPlan: (422, "validation-error"),
        PlanConflict: (409, "plan-conflict"),
        UnknownPlan: (404, "not-found"),
        PlanNotRequested: (409, "plan-not-requested"),
        SelfApproval: (403, "four-eyes"),
        UnknownStatement: (422, "validation-error"),
        InvalidConfirmation: (422, "validation-error"),
        UnknownInvoice: (422, "validation-error"),
        CurrencyMismatch: (422, "validation-error"),
        InvoiceNotOpen: (409, "invoice-not-open"),
        AlreadyPromised: (409, "already-promised"),
        RunOutOfOrder: (409, "run-out-of-order"),
        UnknownCollector: (422, "validation-error"),
        UnknownTask: (404, "not-found"),
        TaskNotOpen: (409, "task-not-open"),
    },
    fields={"amount": "body.amount", "currency": "body.currency", "promised_date": "body.promised_date",
            "invoice_ids": "body.invoice_ids", "as_of": "body.as_of", "collector_id": "body.collector_id",
            "rules": "body.rules", "instalments": "body.instalments", "plan_id": "body.plan_id",
            "approved_on": "body.approved_on", "statement_id": "body.statement_id", "balance": "body.balance",
            "responded_on": "body.responded_on"},
)


async def read_models(engine: Engine, query: Callable[Concatenate[Connection, P], R], *args: P.args,
                **kwargs: P.kwargs) -> R:
    """A read-model query, in a worker thread, on a connection of its own."""

    def read() -> R:
        with engine.connect() as conn:
            return query(conn, *args, **kwargs)

    return await asyncio.to_thread(read)


# --------------------------------------------------------------------------- policies


class LevelIn(BaseModel):
    """A level as ``PUT /policies/{name}`` takes it: the contract's ``channel`` (the primary
    one), optionally more ``channels`` used alongside it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    days_past_due: Days = Field(description="reached on due date + this many days; negative: before due")
    channel: Channel
    channels: list[Channel] = Field(default_factory=list, description="further channels, after `channel`")
    template: str
    templates: dict[str, str] = Field(default_factory=dict, description="template per language")
    fee: RequestAmount = ZERO
    min_amount: RequestAmount = ZERO
    min_days_since_last_notice: DaysAfter = 0
    respond_within_days: DaysAfter | None = None
    escalate: bool = False


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="if given, must equal the name in the path")
    version: int | None = Field(default=None, ge=0, le=BIGINT_MAX,
                                description="ignored: the service numbers the versions")
    description: str = Field(default="", max_length=2000, pattern=NO_NUL)
    levels: list[LevelIn] = Field(min_length=1, max_length=MAX_LEVELS)
    promise_grace_days: DaysAfter = 3
    respond_within_days: DaysAfter = 14
    annual_interest_percent: RequestAmount | None = None
    default_language: str = "en"
    plan_grace_days: DaysAfter = 5
    instalment_reminder_days: DaysAfter = 3
    statement_day: int | None = Field(default=None, ge=1, le=31)
    confirm_balance_every: int | None = Field(default=None, ge=1, le=120, description="months")


def policy_out(policy: Policy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


@router.get("/policies", tags=["policies"], response_model=None, responses=answers_with(PoliciesOut))
async def list_policies(app: AppDep, _: DunningReader) -> dict[str, Any]:
    book = await asyncio.to_thread(app.policy_book)
    return {"policies": [policy_out(p) for p in book.all()]}


@router.get("/policies/{name}", tags=["policies"], response_model=None, responses=answers_with(Policy))
async def get_policy(name: PolicyName, app: AppDep, _: DunningReader) -> dict[str, Any]:
    book = await asyncio.to_thread(app.policy_book)
    policy = book.get(name)
    if policy is None:
        raise not_found("policy", name)
    return policy_out(policy)


@router.put("/policies/{name}", tags=["policies"], response_model=None, responses=answers_with(Policy))
async def put_policy(name: PolicyName, body: PolicyIn, app: AppDep, writer: WriterDep,
                     _: DunningWriter) -> dict[str, Any]:
    """Store a new version of a policy (the same content again keeps its version)."""
    if body.name is not None and body.name != name:
        raise field_problem("body.name",
                             f"must equal the name in the path ({name})")
    data = body.model_dump(exclude={"name", "version"})
    data["levels"] = [
        {**{k: v for k, v in level.items() if k not in ("channel", "channels")},
         "channels": [level["channel"], *[c for c in level["channels"] if c != level["channel"]]]}
        for level in data["levels"]
    ]
    try:
        policy = Policy.model_validate({**data, "name": name})
    except ValidationError as error:
        errors = [{"field": field_name(("body", *e["loc"])),
                   "message": e["msg"].removeprefix("Value error, ")} for e in error.errors()]
        raise Problem(422, "validation-error", REQUEST_INVALID,
                      "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
    missing = app.renderer.missing(policy)
    if missing:
        language = policy.default_language
        index = next(i for i, level in enumerate(policy.levels)
                     if f"{level.template_for(language)}.{language}.j2" in missing
                     or any(f"{n}.{lang}.j2" in missing for lang, n in level.templates.items()))
        raise field_problem(f"body.levels[{index}].template",
                             f"no such template: {', '.join(missing)}")
    stored = await writer.run(app.store_policy, policy)
    return policy_out(stored)


# --------------------------------------------------------------------------- runs


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: BusinessDate = Field(description="the business date the run is for")


@router.post("/runs", tags=["runs"], response_model=None, responses=answers_with(RunOut))
async def post_run(body: RunIn, request: Request, runner: RunnerDep, _: DunningWriter) -> dict[str, Any]:
    """Run dunning for a date: ``{"run_id", "as_of", "notices"}``; a date run before answers the
    same notices again and issues nothing new; a date before the latest run is refused (409),
    one beyond today (plus the tolerance) too (422)."""
    not_ahead_of_clock(body.as_of, "body.as_of", request)
    try:
        return await runner.run(body.as_of)
    except ReadModelsBehind as error:
        raise Problem(503, "read-models-behind", detail=str(error), headers={"Retry-After": "5"}) from None


# --------------------------------------------------------------------------- customers


class PromiseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promised_date: BusinessDate
    amount: RequestAmount
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN,
                                 description="needed when the customer owes in several currencies")
    invoice_ids: list[str] | None = Field(default=None, description="default: the oldest due open invoices")
    made_on: BusinessDate | None = Field(default=None,
                                 description="business date of the promise; default today (UTC)")


@router.post("/customers/{customer_id}/promises", status_code=201, tags=["customers"], response_model=None,
             responses=answers_with(PromiseOut, 201))
async def post_promise(customer_id: str, body: PromiseIn, request: Request, app: AppDep, writer: WriterDep,
                       _: DunningWriter) -> dict[str, Any]:
    """A promise to pay: pauses dunning of the covered invoices until promised_date + grace."""
    made_on = given_or_today(body.made_on, "body.made_on", request)
    promise = await writer.run(
        app.promise, customer_id, made_on=made_on, promised_date=body.promised_date,
        amount=body.amount, currency=body.currency, invoice_ids=body.invoice_ids)
    if promise is None:
        raise not_found("customer", customer_id)
    return {"customer_id": customer_id, **promise}


@router.get("/customers/{customer_id}/dunning", tags=["customers"], response_model=None,
            responses=answers_with(DunningViewOut))
async def get_customer_dunning(customer_id: str, app: AppDep, _: DunningReader) -> dict[str, Any]:
    """Current level per invoice, notices sent, promises (pauses), the policy and wake date."""

    def read() -> dict[str, Any] | None:
        account = app.account(customer_id, fresh=True)
        if account is None:
            return None
        policy = resolve(app.policy_book(), account.policy_name)
        wake = account.wake_date(policy)
        return {**account.view(), "policy_used": policy.name, "policy_version": policy.version,
                "next_action_on": wake.isoformat() if wake else None}

    view = await asyncio.to_thread(read)
    if view is None:
        raise not_found("customer", customer_id)
    return view


# --------------------------------------------------------------------------- collectors


class CollectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email | None = None
    active: bool = True


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[AssignmentRule] = Field(max_length=MAX_RULES, description="the first that matches assigns")


class CollectorAssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collector_id: RequestId


def _rules_out(book: CollectorBook) -> dict[str, Any]:
    return {"version": book.rules_version, "rules": book.rule_data}


@router.get("/collectors", tags=["collectors"], response_model=None, responses=answers_with(CollectorsOut))
async def list_collectors(app: AppDep, _: DunningReader) -> dict[str, Any]:
    book = await asyncio.to_thread(app.collector_book)
    return {"collectors": [c.model_dump(mode="json") for c in book.all_collectors()]}


@router.put("/collectors/{collector_id}", tags=["collectors"], response_model=None,
            responses=answers_with(Collector))
async def put_collector(collector_id: CollectorId, body: CollectorIn, app: AppDep, writer: WriterDep,
                        _: DunningWriter) -> dict[str, Any]:
    """Store a collector (new, or changed: name, email, active)."""
    collector = Collector(collector_id=collector_id, **body.model_dump())
    return (await writer.run(app.put_collector, collector)).model_dump(mode="json")


@router.get("/assignment-rules", tags=["collectors"], response_model=None, responses=answers_with(RulesOut))
async def get_rules(app: AppDep, _: DunningReader) -> dict[str, Any]:
    return _rules_out(await asyncio.to_thread(app.collector_book))


@router.put("/assignment-rules", tags=["collectors"], response_model=None, responses=answers_with(RulesOut))
async def put_rules(body: RulesIn, app: AppDep, writer: WriterDep, _: DunningWriter) -> dict[str, Any]:
    """Replace the ordered rules; the first whose ``when`` a customer meets assigns it. They
    apply whenever a customer's facts change, and at the next run to every customer."""
    return _rules_out(await writer.run(app.put_rules, body.rules))


def _assignment(customer_id: str, view: dict[str, Any] | None) -> dict[str, Any]:
    if view is None:
        raise not_found("customer", customer_id)
    return {"customer_id": customer_id, "collector_id": view["collector_id"],
            "assigned_by": view["assigned_by"]}


@router.put("/customers/{customer_id}/collector", tags=["collectors"], response_model=None,
            responses=answers_with(AssignmentOut))
async def put_customer_collector(customer_id: str, body: CollectorAssignmentIn, app: AppDep,
                                 writer: WriterDep, principal: DunningWriter) -> dict[str, Any]:
    """Assign a collector by hand: it wins over the rules until removed."""
    view = await writer.run(app.assign, customer_id, body.collector_id, principal.identity)
    return _assignment(customer_id, view)


@router.delete("/customers/{customer_id}/collector", tags=["collectors"], response_model=None,
               responses=answers_with(AssignmentOut))
async def delete_customer_collector(customer_id: str, app: AppDep, writer: WriterDep,
                                    principal: DunningWriter) -> dict[str, Any]:
    """Remove the manual assignment: the rules assign the customer again."""
    view = await writer.run(app.unassign, customer_id, principal.identity)
    return _assignment(customer_id, view)


# --------------------------------------------------------------------------- tasks, activities, timeline


class TaskCompletionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)
    completed_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ActivityKind
    outcome: Outcome | None = None
    note: str = Field(max_length=2000, pattern=NO_NUL)
    occurred_on: BusinessDate | None = Field(default=None, description="business date; default today (UTC)")
    collector_id: RequestId | None = Field(default=None, description="default: the customer's collector")


@router.get("/tasks", tags=["collections"], response_model=None, responses=answers_with(TasksOut))
async def get_tasks(
    engine: EngineDep, _: DunningReader,
    collector_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
    status: Literal["open", "done"] | None = None,
    due_before: Annotated[BusinessDate | None, Query(description="due before this business date")] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The collectors' tasks (calls and visits the runs' notices created), the earliest due first."""

    return await read_models(engine, queries.find_tasks, collector_id=collector_id, status=status,
                       due_before=due_before, customer_id=customer_id, limit=limit)


@router.post("/tasks/{task_id}/complete", tags=["collections"], response_model=None,
             responses=answers_with(TaskOut))
async def complete_task(task_id: Annotated[str, Path(max_length=64)], body: TaskCompletionIn,
                        request: Request, app: AppDep, engine: EngineDep, writer: WriterDep,
                        principal: DunningWriter) -> dict[str, Any]:
    """Complete a task with its outcome (the same completion again answers the same task)."""
    completed_on = given_or_today(body.completed_on, "body.completed_on", request)

    customer_id = await read_models(engine, queries.task_customer, task_id)
    task = None if customer_id is None else await writer.run(
        app.complete_task, customer_id, task_id, outcome=body.outcome, note=body.note,
        completed_on=completed_on, actor=principal.identity)
    if task is None:
        raise not_found("task", task_id)
    return task


@router.post("/customers/{customer_id}/activities", status_code=201, tags=["collections"],
             response_model=None, responses=answers_with(ActivityOut, 201))
async def post_activity(customer_id: str, body: ActivityIn, request: Request, app: AppDep, writer: WriterDep,
                        principal: DunningWriter) -> dict[str, Any]:
    """Log a contact outside the runs (a call, an e-mail, a visit, a letter) or a note."""
    occurred_on = given_or_today(body.occurred_on, "body.occurred_on", request)
    activity = await writer.run(
        app.log_activity, customer_id, kind=body.kind, outcome=body.outcome, note=body.note,
        occurred_on=occurred_on, collector_id=body.collector_id, actor=principal.identity)
    if activity is None:
        raise not_found("customer", customer_id)
    return activity


@router.get("/customers/{customer_id}/timeline", tags=["collections"], response_model=None,
            responses=answers_with(TimelineOut))
async def get_timeline(
    customer_id: str, request: Request, response: Response, app: AppDep, _: DunningReader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=100,
                                        description="the X-Next-Cursor of the page before")] = None,
) -> list[dict[str, Any]]:
    """Everything the service knows of the customer, newest first: notices, tasks, activities,
    promises, assignments, and the ledger's facts it observed (payments, disputes). A page
    with more after it names the next one's cursor in ``X-Next-Cursor`` (and ``Link``)."""
    try:
        found = await asyncio.to_thread(app.timeline, customer_id, limit=limit, cursor=cursor)
    except timeline.BadCursor as error:
        message = str(error).removeprefix("cursor: ")
        raise field_problem("query.cursor", message) from None
    if found is None:
        raise not_found("customer", customer_id)
    entries, next_cursor = found
    if next_cursor is not None:
        response.headers["X-Next-Cursor"] = next_cursor
        following = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{following}>; rel="next"'
    return entries


# --------------------------------------------------------------------------- KPIs


def _kpis(found: dict[str, Any], first: date, last: date) -> dict[str, Any]:
    counts = found["counts"]
    closed = counts["promise_kept"] + counts["promise_broken"]
    days = (last - first).days + 1
    currencies = sorted({*found["balances"], *found["sales"], *found["collected"]})
    per_currency = []
    for currency in currencies:
        row = found["balances"].get(currency)
        ar_start, ar_end, current_end, overdue = (
            (row.ar_start, row.ar_end, row.current_end, row.overdue) if row else (ZERO,) * 4)
        figures = collection_figures(ar_start=ar_start, sales=found["sales"].get(currency, ZERO),
                                     ar_end=ar_end, current_end=current_end, days=days)
        per_currency.append({
            "currency": currency, "overdue_amount": to_text(overdue, currency),
            "collected_amount": to_text(found["collected"].get(currency, ZERO), currency),
            "cei": _decimal(figures.cei),
            "average_days_delinquent": _decimal(figures.average_days_delinquent),
        })
    return {
        "from": first.isoformat(), "to": last.isoformat(), "accounts": found["accounts"],
        "promises_made": counts["promise_made"], "promises_kept": counts["promise_kept"],
        "promises_broken": counts["promise_broken"],
        "kept_rate": _decimal(rounded(Decimal(counts["promise_kept"] * 100) / closed) if closed else None),
        "plans_agreed": counts["plan_agreed"], "plans_completed": counts["plan_completed"],
        "plans_broken": counts["plan_broken"],
        "contacts": counts["contact"], "currencies": per_currency,
    }


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


KpiFrom = Annotated[BusinessDate, Query(alias="from", description="first business date of the period")]
KpiTo = Annotated[BusinessDate, Query(alias="to", description="last business date of the period")]


async def _read_kpis(engine: Engine, collector_id: str | None, first: date, last: date) -> dict[str, Any]:
    if last < first:
        raise field_problem("query.to", f"must not be before from ({first})")
    return _kpis(await read_models(engine, queries.kpis, collector_id, first, last), first, last)


@router.get("/collectors/{collector_id}/kpis", tags=["collections"], response_model=None,
            responses=answers_with(KpisOut))
async def get_collector_kpis(collector_id: CollectorId, first: KpiFrom, last: KpiTo, app: AppDep,
                             engine: EngineDep, _: DunningReader) -> dict[str, Any]:
    """One collector's figures over a period (see the service README for each definition)."""
    book = await asyncio.to_thread(app.collector_book)
    if book.collector(collector_id) is None:
        raise not_found("collector", collector_id)
    return {"collector_id": collector_id, **await _read_kpis(engine, collector_id, first, last)}


@router.get("/kpis", tags=["collections"], response_model=None, responses=answers_with(KpisOut))
async def get_team_kpis(first: KpiFrom, last: KpiTo, engine: EngineDep, _: DunningReader) -> dict[str, Any]:
    """The team's figures over a period: every customer, whoever works it."""
    return {"collector_id": None, **await _read_kpis(engine, None, first, last)}


# --------------------------------------------------------------------------- notices, worklist


@router.get("/notices", tags=["notices"], response_model=None, responses=answers_with(NoticesOut))
async def get_notices(
    engine: EngineDep, _: DunningReader,
    status: Annotated[Literal["outstanding", "settled"] | None,
                      Query(description="outstanding: an invoice on it is still open")] = None,
    level: Annotated[int | None, Query(ge=1, le=1000)] = None,
    as_of: Annotated[BusinessDate | None, Query(description="notices of the run of this date")] = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return {"notices": await read_models(engine, queries.find_notices, status=status, level=level,
                                         as_of=as_of, customer_id=customer_id, limit=limit)}


@router.get("/worklist", tags=["notices"], response_model=None, responses=answers_with(WorklistOut))
async def get_worklist(
    engine: EngineDep, _: DunningReader, request: Request,
    as_of: Annotated[BusinessDate | None, Query(description="business date; default today (UTC)")] = None,
    collector_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL,
                                              description="only the customers this collector works")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Customers by expected loss where the ledger predicts it (``expected_loss``: each overdue
    invoice's open amount x its probability of being paid more than 30 days late), else by amount
    at risk: overdue undisputed open amount x (1 + dunning level). The candidates are the first
    ``WORKLIST_CANDIDATES`` x ``limit`` (at most 1,000) by amount at risk; ``predictions`` says
    whether the ledger answered, and why not."""
    day = as_of or today_utc()
    settings = request.app.state.settings
    outlooks = Outlooks(settings.ledger_url, settings.ledger_token)
    wanted = limit if outlooks.base_url is None else min(1000, limit * WORKLIST_CANDIDATES)
    rows = await read_models(engine, queries.worklist, day, wanted, collector_id=collector_id)
    answer = await outlooks.ask([r["customer_id"] for r in rows], day) if rows else None
    predicted = answer.outlooks if answer is not None and answer.outlooks is not None else None
    shown = []
    for order, r in enumerate(rows):
        row = {
            "customer_id": r["customer_id"], "collector_id": r["collector_id"], "currency": r["currency"],
            "overdue_amount": to_text(r["overdue_amount"], r["currency"]),
            "amount_at_risk": to_text(r["amount_at_risk"], r["currency"]), "level": r["level"],
            "invoices": r["invoices"], "oldest_due_date": r["oldest_due_date"].isoformat(),
            "days_past_due": (day - r["oldest_due_date"]).days,
            "max_days_past_due": (day - r["oldest_due_date"]).days, "escalated": bool(r["escalated"]),
            "open_tasks": r["open_tasks"], "broken_promises_90d": r["broken_promises_90d"],
            "last_contact_on": r["last_contact_on"], "next_action_on": r["next_action_on"],
            "plan_id": r["plan_id"], "plan_status": r["plan_status"], "plans_agreed": r["plans_agreed"] or 0,
            "plans_completed": r["plans_completed"] or 0, "plans_broken": r["plans_broken"] or 0,
            "balance_disputed_on": r["balance_disputed_on"]}
        outlook = predicted.get((r["customer_id"], r["currency"])) if predicted is not None else None
        if outlook is not None:
            row["expected_loss"] = to_text(outlook.expected_loss, r["currency"])
            row["predicted_days_late"] = outlook.predicted_days_late
        # predicted rows first, by expected loss; then the rest as before (amount at risk)
        key = (0, -outlook.expected_loss, order) if outlook is not None else (1, ZERO, order)
        shown.append((key, row))
    shown.sort(key=lambda item: item[0])
    note: dict[str, Any] = {"used": False, "reason": "no customer to predict"}
    if answer is not None:
        note = ({"used": True, "model_version": answer.model_version} if answer.outlooks is not None
                else {"used": False, "reason": answer.unavailable})
    return {"as_of": day.isoformat(), "predictions": note, "customers": [row for _, row in shown[:limit]]}
