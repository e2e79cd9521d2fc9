"""The run decision for one customer and currency: which level, which invoices, or nothing.

Pure and cheap (one pass over the customer's dunnable invoices), so a daily run over a
large book costs little per customer, and ``earliest_action`` gives a date before which a
run cannot act, which a service can store to pre-filter the customers worth loading.

The rules, given the invoices a run may dun (open, undisputed part > 0, not paused, not
escalated, issued by the run date):

- An invoice is *due* a level when the level after its last one (``Policy.next_level``:
  one step at a time, pre-due reminders skipped once overdue) is reached by its days past
  due. So no level ever repeats for an invoice, and a resumed invoice goes on from where
  it was.
- The notice takes the highest level any invoice is due, and never a level below one an
  invoice it may dun has reached already: a pre-due reminder for a new invoice does not
  follow a second notice for an older one at level 1, it goes out with it at level 2
  (the customer's level never goes down while an invoice stays higher). It must pass that
  level's conditions: at least ``min_days_since_last_notice`` days since the previous
  notice in this currency, and the open total of the notice at least ``min_amount``. If it
  fails, the next lower level any invoice is due is tried (no lower than that floor), and
  so on.
- The notice lists every invoice at its level or below: those due a level up to the one
  tried (advanced to their own level by this notice) and those already dunned at a level
  up to the notice's (listed with their open amount, their level unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from services.dunning.domain.policy import Policy
from shared.money import ZERO


@dataclass(frozen=True, slots=True)
class Candidate:
    """An invoice as a run sees it."""

    invoice_id: str
    due_date: date
    open_amount: Decimal  # the part that may be dunned: open less disputed
    level: int  # the last level it was dunned at (0: none yet)


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice on a notice."""

    invoice_id: str
    due_date: date
    open_amount: Decimal
    days_past_due: int
    level: int
    advanced: bool  # True: this notice takes the invoice to ``level``


@dataclass(frozen=True, slots=True)
class Decision:
    """The notice a run issues for one customer and currency."""

    level: int
    lines: tuple[Line, ...]

    @property
    def open_total(self) -> Decimal:
        return sum((line.open_amount for line in self.lines), ZERO)


def decide(candidates: Sequence[Candidate], as_of: date, policy: Policy,
           last_notice_on: date | None) -> Decision | None:
    """The notice to issue on ``as_of`` for these invoices, or None."""
    due: dict[str, int] = {}
    for candidate in candidates:
        days_past_due = (as_of - candidate.due_date).days
        target = policy.next_level(candidate.level, days_past_due)
        if target is not None and policy.level(target).days_past_due <= days_past_due:
            due[candidate.invoice_id] = target
    floor = max((candidate.level for candidate in candidates), default=0)
    for tried in sorted(set(due.values()), reverse=True):
        level = max(tried, floor)
        spec = policy.level(level)
        if last_notice_on is not None and (as_of - last_notice_on).days < spec.min_days_since_last_notice:
            continue
        lines = []
        for candidate in candidates:
            target = due.get(candidate.invoice_id)
            if target is not None and target <= tried:
                line_level, advanced = target, True
            elif 1 <= candidate.level <= level:
                line_level, advanced = candidate.level, False
            else:
                continue
            lines.append(Line(candidate.invoice_id, candidate.due_date, candidate.open_amount,
                              (as_of - candidate.due_date).days, line_level, advanced))
        decision = Decision(level, tuple(sorted(lines, key=lambda line: (line.due_date, line.invoice_id))))
        if decision.open_total >= spec.min_amount:
            return decision
    return None


def earliest_action(candidate: Candidate, policy: Policy, last_notice_on: date | None) -> date | None:
    """A date before which no run advances this invoice (None: it never will, as things stand)."""
    following = range(candidate.level + 1, len(policy.levels) + 1)
    if not following:
        return None
    # The level after its last one is the soonest reached; pre-due skipping only picks later ones.
    earliest = candidate.due_date + timedelta(days=policy.level(following[0]).days_past_due)
    if last_notice_on is not None:
        spacing = min(policy.level(number).min_days_since_last_notice for number in following)
        earliest = max(earliest, last_notice_on + timedelta(days=spacing))
    return earliest
