"""Read-side queries over the dunning read models: run candidates, notices, the worklist."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, not_, or_, select, tuple_
from sqlalchemy.engine import Connection

from services.dunning.domain.registry import PolicyBook, resolve
from services.dunning.domain.statements import StatementContext, StatementFigures
from services.dunning.projections import (
    PROJECTOR_NAME,
    accounts,
    invoices,
    kpi_entries,
    notice_invoices,
    notices,
    plans,
    positions,
    promises,
    statements,
    tasks,
)
from shared.db import execute_sums, money_sum, plain_row
from shared.money import to_text


def projector_position(conn: Connection) -> int:
    value = conn.execute(select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)).scalar()
    return int(value or 0)


def run_candidates(conn: Connection, as_of: date, book: PolicyBook, *, everyone: bool = False
                   ) -> Iterator[str]:
    """Customers a run on ``as_of`` may act for, in id order.

    Those whose wake date has come, and those whose wake date was worked out with a policy
    (or policy version) other than the one that now applies to them; ``everyone``: all.
    """
    if everyone:
        yield from conn.execute(select(accounts.c.customer_id).order_by(accounts.c.customer_id)).scalars()
        return
    stale = []
    groups = select(accounts.c.policy, accounts.c.policy_used, accounts.c.policy_version).distinct()
    for name, used, version in conn.execute(groups):
        current = resolve(book, name)
        if (current.name, current.version) != (used, version):
            stale.append((name, used, version))
    condition = accounts.c.wake_date <= as_of
    if stale:
        key = tuple_(accounts.c.policy, accounts.c.policy_used, accounts.c.policy_version)
        condition = or_(condition, key.in_(stale))
    query = select(accounts.c.customer_id).where(condition).order_by(accounts.c.customer_id)
    yield from conn.execute(query).scalars()


def notices_of(conn: Connection, as_of: date) -> list[dict[str, Any]]:
    """The notices issued by the run of ``as_of``, in the order issued."""
    query = select(notices.c.payload).where(notices.c.as_of == as_of).order_by(notices.c.position)
    return [dict(payload) for payload in conn.execute(query).scalars()]


def _outstanding() -> Any:
    """A notice is outstanding while an invoice on it is still open."""
    return exists().where(
        notice_invoices.c.notice_id == notices.c.notice_id,
        invoices.c.invoice_id == notice_invoices.c.invoice_id,
        invoices.c.open_amount > 0,
    )


def find_notices(conn: Connection, *, status: str | None, level: int | None, as_of: date | None,
                 customer_id: str | None, limit: int) -> list[dict[str, Any]]:
    outstanding = _outstanding()
    query = select(notices.c.payload, outstanding.label("outstanding"))
    if status == "outstanding":
        query = query.where(outstanding)
    elif status == "settled":
        query = query.where(not_(outstanding))
    if level is not None:
        query = query.where(notices.c.level == level)
    if as_of is not None:
        query = query.where(notices.c.as_of == as_of)
    if customer_id is not None:
        query = query.where(notices.c.customer_id == customer_id)
    query = query.order_by(notices.c.as_of.desc(), notices.c.position).limit(limit)
    return [{**dict(row.payload), "status": "outstanding" if row.outstanding else "settled"}
            for row in conn.execute(query)]


def worklist(conn: Connection, as_of: date, limit: int, *, collector_id: str | None = None
             ) -> list[dict[str, Any]]:
    """Customers by amount at risk on ``as_of``: Σ overdue dunnable amount x (1 + level), each
    with its collector, open tasks, promises broken in the 90 days up to ``as_of``, the last
    day it was contacted and the next date a run may act for it.

    Overdue: due before ``as_of``; dunnable: open less disputed; an invoice's level weight
    is one more than the last level it was dunned at (never dunned: 1; escalated: the
    hand-off level + 1), so the same money weighs more the further dunning has gone.
    """
    dunnable = invoices.c.open_amount - invoices.c.disputed_amount
    at_risk = money_sum(dunnable, weight=invoices.c.level + 1).label("amount_at_risk")
    conditions = [invoices.c.open_amount > invoices.c.disputed_amount, invoices.c.due_date < as_of]
    if collector_id is not None:
        conditions.append(invoices.c.collector_id == collector_id)
    per_customer = (
        select(
            invoices.c.customer_id, invoices.c.currency,
            money_sum(dunnable).label("overdue_amount"), at_risk,
            func.max(invoices.c.level).label("level"), func.count().label("invoices"),
            func.min(invoices.c.due_date).label("oldest_due_date"),
            func.max(case((invoices.c.escalated, 1), else_=0)).label("escalated"),
        )
        .where(and_(*conditions))
        .group_by(invoices.c.customer_id, invoices.c.currency)
        .order_by(at_risk.desc(), invoices.c.customer_id, invoices.c.currency)
        .limit(limit)
        .subquery()
    )
    customer = per_customer.c.customer_id
    open_tasks = (select(func.count()).select_from(tasks)
                  .where(tasks.c.customer_id == customer, tasks.c.status == "open").scalar_subquery())
    broken = (select(func.count()).select_from(promises)
              .where(promises.c.customer_id == customer, promises.c.status == "broken",
                     promises.c.closed_on > as_of - timedelta(days=90), promises.c.closed_on <= as_of)
              .scalar_subquery())
    query = (select(per_customer, accounts.c.collector_id, accounts.c.last_contact_on, accounts.c.plan_id,
                    accounts.c.plan_status, accounts.c.plans_agreed, accounts.c.plans_completed,
                    accounts.c.plans_broken, accounts.c.balance_disputed_on,
                    accounts.c.wake_date.label("next_action_on"), open_tasks.label("open_tasks"),
                    broken.label("broken_promises_90d"))
             .join(accounts, accounts.c.customer_id == per_customer.c.customer_id, isouter=True)
             .order_by(per_customer.c.amount_at_risk.desc(), per_customer.c.customer_id,
                       per_customer.c.currency))
    return [plain_row(row._mapping) for row in execute_sums(conn, query)]


def find_tasks(conn: Connection, *, collector_id: str | None, status: str | None, due_before: date | None,
               customer_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Tasks, the earliest due first."""
    query = select(tasks)
    if collector_id is not None:
        query = query.where(tasks.c.collector_id == collector_id)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if due_before is not None:
        query = query.where(tasks.c.due_on < due_before)
    if customer_id is not None:
        query = query.where(tasks.c.customer_id == customer_id)
    query = query.order_by(tasks.c.due_on, tasks.c.task_id).limit(limit)
    return [plain_row(row._mapping) for row in conn.execute(query)]


def task_customer(conn: Connection, task_id: str) -> str | None:
    """The customer a task is for (None: no such task, or not projected yet)."""
    return conn.execute(select(tasks.c.customer_id).where(tasks.c.task_id == task_id)).scalar()


def plan_customer(conn: Connection, plan_id: str) -> str | None:
    """The customer a plan is for (None: no such plan, or not projected yet)."""
    return conn.execute(select(plans.c.customer_id).where(plans.c.plan_id == plan_id)).scalar()


def find_plans(conn: Connection, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Plans as last projected, the earliest asked for first."""
    query = select(plans.c.plan)
    if status is not None:
        query = query.where(plans.c.status == status)
    query = query.order_by(plans.c.requested_on, plans.c.plan_id).limit(limit)
    return [dict(plan) for plan in conn.execute(query).scalars()]


def statement_figures(conn: Connection, first: date, last: date) -> dict[str, list[StatementFigures]]:
    """Every customer's statement figures for ``first``..``last`` (inclusive), per currency with
    anything open at the end of it or any movement in it: two aggregates over the dated
    figures kept from the ledger's feed (``kpi_entries``: an invoice's open amount changes,
    the unapplied cash's), not a walk over anyone's events.

    The balance is the open amounts less the unapplied cash, as the ledger's statement has it.
    """
    k = kpi_entries
    sign = case((k.c.kind == "receivable", 1), else_=-1)
    before = case((k.c.on_date < first, k.c.amount), else_=0)
    totals = (
        select(k.c.customer_id, k.c.currency,
               money_sum(before, weight=sign).label("opening"),
               money_sum(k.c.amount, weight=sign).label("closing"),
               money_sum(case((k.c.kind == "unapplied", k.c.amount), else_=0)).label("unapplied"),
               func.max(case((k.c.on_date >= first, 1), else_=0)).label("moved"))
        .where(k.c.kind.in_(("receivable", "unapplied")), k.c.on_date <= last)
        .group_by(k.c.customer_id, k.c.currency)
    )
    open_amount = money_sum(k.c.amount).label("open_amount")
    items = (
        select(k.c.customer_id, k.c.currency, k.c.invoice_id, open_amount)
        .where(k.c.kind == "receivable", k.c.on_date <= last)
        .group_by(k.c.customer_id, k.c.currency, k.c.invoice_id)
        .having(money_sum(k.c.amount) != 0)
        .subquery()
    )
    listed = (select(items, invoices.c.amount, invoices.c.issue_date, invoices.c.due_date)
              .join(invoices, invoices.c.invoice_id == items.c.invoice_id)
              .order_by(items.c.customer_id, invoices.c.due_date, items.c.invoice_id))
    open_items: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in execute_sums(conn, listed):
        open_items.setdefault((row.customer_id, row.currency), []).append({
            "invoice_id": row.invoice_id, "issue_date": row.issue_date.isoformat(),
            "due_date": row.due_date.isoformat(), "amount": to_text(row.amount, row.currency),
            "open_amount": to_text(row.open_amount, row.currency),
            "days_past_due": max(0, (last - row.due_date).days)})
    found: dict[str, list[StatementFigures]] = {}
    for row in execute_sums(conn, totals):
        key = (row.customer_id, row.currency)
        if not (row.moved or row.closing or row.unapplied or key in open_items):
            continue
        found.setdefault(row.customer_id, []).append(StatementFigures(
            currency=row.currency, period_from=first, period_to=last, opening_balance=row.opening,
            closing_balance=row.closing, unapplied_cash=row.unapplied, open_items=open_items.get(key, [])))
    for figures in found.values():
        figures.sort(key=lambda f: f.currency)
    return found


def statement_contexts(conn: Connection, as_of: date, customer_ids: Collection[str]
                       ) -> list[tuple[StatementContext, str]]:
    """What a statement run of ``as_of`` needs to know of these customers, from the read
    models, each with the name of its policy; in customer order (those without an account
    are left out). A context without a ``name`` is of an account whose row was last written
    before the read models kept one: its account knows."""
    wanted = set(customer_ids)
    asked: dict[str, dict[str, date]] = {}
    last_asked = (select(statements.c.customer_id, statements.c.currency, func.max(statements.c.as_of))
                  .where(statements.c.confirmation_requested).group_by(statements.c.customer_id,
                                                                      statements.c.currency))
    for customer_id, currency, day in conn.execute(last_asked):
        if customer_id in wanted:
            asked.setdefault(customer_id, {})[currency] = day
    issued: dict[str, set[str]] = {}
    for customer_id, statement_id in conn.execute(
            select(statements.c.customer_id, statements.c.statement_id).where(statements.c.as_of == as_of)):
        issued.setdefault(customer_id, set()).add(statement_id)
    a = accounts.c
    found = []
    for row in conn.execute(select(a.customer_id, a.policy, a.do_not_dun, a.name, a.language)
                            .order_by(a.customer_id)):
        if row.customer_id in wanted:
            found.append((StatementContext(
                row.customer_id, row.name, row.language, row.do_not_dun,
                frozenset(issued.get(row.customer_id, ())), asked.get(row.customer_id, {})), row.policy))
    return found


def statements_of(conn: Connection, *, as_of: date | None = None, customer_id: str | None = None
                  ) -> list[dict[str, Any]]:
    """Statements as issued (with the customer's answer), in the order issued."""
    query = select(statements.c.payload)
    if as_of is not None:
        query = query.where(statements.c.as_of == as_of)
    if customer_id is not None:
        query = query.where(statements.c.customer_id == customer_id)
    return [dict(payload) for payload in conn.execute(query.order_by(statements.c.position)).scalars()]


COUNTED = ("promise_made", "promise_kept", "promise_broken", "plan_agreed", "plan_completed", "plan_broken",
           "contact")


def kpis(conn: Connection, collector_id: str | None, first: date, last: date) -> dict[str, Any]:
    """A collector's KPIs (``collector_id`` None: the team's) over ``first``..``last`` inclusive.

    Portfolio figures (accounts, overdue amount, CEI, average days delinquent) are of the
    customers the collector works now; activity figures (collected, promises, contacts) of
    what happened in the period while the collector worked the customer.
    """
    k = kpi_entries
    start = first - timedelta(days=1)  # AR at start: the balance at the end of the day before
    mine = [k.c.collector_id == collector_id] if collector_id is not None else []
    portfolio = select(accounts.c.customer_id)
    if collector_id is not None:
        portfolio = portfolio.where(accounts.c.collector_id == collector_id)
    in_portfolio = [k.c.customer_id.in_(portfolio)] if collector_id is not None else []
    amount = k.c.amount
    balances = (
        select(k.c.currency,
               money_sum(case((k.c.on_date <= start, amount), else_=0)).label("ar_start"),
               money_sum(amount).label("ar_end"),
               money_sum(case((k.c.due_date >= last, amount), else_=0)).label("current_end"),
               money_sum(case((k.c.due_date < last, amount), else_=0)).label("overdue"))
        .where(k.c.kind == "receivable", k.c.on_date <= last, *in_portfolio)
        .group_by(k.c.currency)
    )
    sales = (select(k.c.currency, money_sum(amount).label("sales"))
             .where(k.c.kind == "invoiced", k.c.on_date > start, k.c.on_date <= last, *in_portfolio)
             .group_by(k.c.currency))
    collected = (select(k.c.currency, money_sum(amount).label("collected"))
                 .where(k.c.kind == "collected", k.c.on_date >= first, k.c.on_date <= last, *mine)
                 .group_by(k.c.currency))
    counts = dict(conn.execute(
        select(k.c.kind, func.count()).where(k.c.kind.in_(COUNTED), k.c.on_date >= first,
                                             k.c.on_date <= last, *mine).group_by(k.c.kind)).all())
    return {
        "accounts": conn.execute(select(func.count()).select_from(portfolio.subquery())).scalar_one(),
        "counts": {kind: int(counts.get(kind, 0)) for kind in COUNTED},
        "balances": {row.currency: row for row in execute_sums(conn, balances)},
        "sales": {row.currency: row.sales for row in execute_sums(conn, sales)},
        "collected": {row.currency: row.collected for row in execute_sums(conn, collected)},
    }
