"""Statements of account and balance confirmations, as the dunning service sends them (no I/O,
no clock: the run date is a parameter).

A statement run of a date (``as_of``) sends each customer one statement per currency in which
it has anything open at the end of the period, or any movement in it. The figures are the
ledger's, kept from its feed (``queries.statement_figures``): the balance before the period
and at its end (open invoices less unapplied cash), the invoices open at its end and the
unapplied cash. A statement asks the customer to confirm its balance when the customer's
policy says so (``confirm_balance_every`` months since the last statement that asked, in
that currency; the first one asks). The customer answers: confirmed, or disputed with the
balance it sees and a note.

Choices where the contract is silent:

- The period is the calendar month before the month of ``as_of``; with ``period_from`` it
  runs from that date to ``as_of`` inclusive.
- A policy's ``statement_day`` (1-31) limits its customers to runs dated on that day of the
  month (in a shorter month, its last day); without one every statement run includes them.
- The same statement (customer, currency, date) is never issued twice.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from services.dunning.domain.notice import Rendered
from services.dunning.domain.policy import Policy
from shared.money import ZERO, to_text

STATEMENT_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:statement")
TEMPLATE = "statement"

Response = Literal["confirmed", "disputed"]


def statement_id(customer_id: str, currency: str, as_of: date) -> UUID:
    """Deterministic: one statement per customer, currency and run date."""
    return uuid5(STATEMENT_NAMESPACE, f"{customer_id}\x1f{currency}\x1f{as_of.isoformat()}")


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole months (the 31st to a month's last day where it has no 31st)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def period(as_of: date, period_from: date | None) -> tuple[date, date]:
    """The period a statement run of ``as_of`` covers (first and last day, inclusive)."""
    if period_from is not None:
        return period_from, as_of
    last = as_of.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def on_statement_day(statement_day: int | None, as_of: date) -> bool:
    """Whether a run of ``as_of`` includes a customer whose policy names ``statement_day``."""
    if statement_day is None:
        return True
    return as_of.day == min(statement_day, calendar.monthrange(as_of.year, as_of.month)[1])


def confirmation_due(last_asked: date | None, as_of: date, every: int | None) -> bool:
    """A statement of ``as_of`` asks for confirmation: ``every`` months have passed since the
    last one that asked (or none asked yet)."""
    if every is None:
        return False
    return last_asked is None or add_months(last_asked, every) <= as_of


@dataclass(frozen=True, slots=True)
class StatementFigures:
    """One customer's figures in one currency for a period, from the ledger's facts."""

    currency: str
    period_from: date
    period_to: date
    opening_balance: Decimal
    closing_balance: Decimal
    unapplied_cash: Decimal
    open_items: list[dict[str, Any]] = field(default_factory=list)  # JSON-native, by due date


def build_statement(customer_id: str, as_of: date, figures: StatementFigures, *, confirmation_requested: bool,
                    language: str) -> dict[str, Any]:
    """The statement as issued (without its text): ``dunning.statement_issued``'s data."""
    currency = figures.currency
    return {
        "statement_id": str(statement_id(customer_id, currency, as_of)),
        "customer_id": customer_id,
        "as_of": as_of.isoformat(),
        "currency": currency,
        "period_from": figures.period_from.isoformat(),
        "period_to": figures.period_to.isoformat(),
        "opening_balance": to_text(figures.opening_balance, currency),
        "closing_balance": to_text(figures.closing_balance, currency),
        "open_items": figures.open_items,
        "open_total": to_text(sum((Decimal(i["open_amount"]) for i in figures.open_items), ZERO), currency),
        "unapplied_cash": to_text(figures.unapplied_cash, currency),
        "confirmation_requested": confirmation_requested,
        "language": language,
        "template": TEMPLATE,
        "text": None,
    }


@dataclass(frozen=True, slots=True)
class StatementContext:
    """What deciding a customer's statements needs to know of it: its account's state, or
    the read models' copy of it (a statement run over the whole book reads that instead of
    loading every account)."""

    customer_id: str
    name: str | None  # (None: not known here; the account knows)
    language: str | None
    do_not_dun: bool
    issued: frozenset[str]  # statement ids issued already
    last_asked: Mapping[str, date]  # per currency: the last statement that asked for confirmation


StatementRender = Callable[[Mapping[str, Any], Mapping[str, Any], Policy], Rendered]


def statements_due(context: StatementContext, as_of: date, figures: Sequence[StatementFigures],
                   policy: Policy, render: StatementRender | None = None) -> list[dict[str, Any]]:
    """The statements a statement run of ``as_of`` issues to a customer, one per currency
    figured: none for a customer not dunned or whose policy's statement day it is not, none
    issued before for the date; each asking for confirmation as the policy says."""
    if context.do_not_dun or not on_statement_day(policy.statement_day, as_of):
        return []
    language = context.language or policy.default_language
    customer = {"customer_id": context.customer_id, "name": context.name, "language": language}
    due = []
    for currency_figures in figures:
        currency = currency_figures.currency
        if str(statement_id(context.customer_id, currency, as_of)) in context.issued:
            continue
        asks = confirmation_due(context.last_asked.get(currency), as_of, policy.confirm_balance_every)
        statement = build_statement(context.customer_id, as_of, currency_figures, confirmation_requested=asks,
                                    language=language)
        if render is not None:
            rendered = render(statement, customer, policy)
            statement.update(template=rendered.template, language=rendered.language, text=rendered.text)
        due.append(statement)
    return due
