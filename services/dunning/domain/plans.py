"""Payment plans (deferral requests): instalments agreed for covered invoices (no I/O, no clock).

A customer who asks for time gets a plan: the invoices it covers, and instalments that add
up to their open amount when it was asked for, in date order. Someone else approves or
rejects it (four eyes: the service refuses an approval by the identity that asked). While
a plan is ``requested`` or ``active`` its invoices are not dunned.

Choices where the contract is silent:

- What the plan has been paid is what the covered invoices' open amount fell by since it
  was asked for (payments, and credit notes or discounts applied to them: whatever the
  customer no longer owes). It counts towards the instalments in date order, so an
  instalment is paid when the cumulative paid reaches the cumulative instalments up to it.
- A plan is broken by the first run dated after an instalment's due date plus
  ``plan_grace_days`` while the instalment is not fully paid; completed when a payment
  leaves nothing open of the covered invoices; cancelled when something else does
  (a cancellation, a write-off, a dispute credited), or, still requested, when its
  invoices are settled before anyone decides.
- An instalment's reminder goes out at the first run from ``instalment_reminder_days``
  before its due date up to the due date itself, once, unless it is paid already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from shared.money import ZERO, to_text

PlanStatus = Literal["requested", "active", "completed", "broken", "rejected", "cancelled"]
OPEN = frozenset({"requested", "active"})  # the covered invoices are not dunned


@dataclass(frozen=True, slots=True)
class Instalment:
    due_date: date
    amount: Decimal


@dataclass(slots=True)
class PaymentPlan:
    """A plan as its events leave it."""

    plan_id: str
    currency: str
    invoice_ids: tuple[str, ...]
    instalments: tuple[Instalment, ...]
    requested_on: date
    reason: str
    requested_by: str
    status: str = "requested"
    decided_on: date | None = None  # approved or rejected
    decided_by: str | None = None
    rejection: str | None = None
    closed_on: date | None = None  # completed, broken or cancelled
    broken_instalment: int | None = None  # 1-based
    reminded: set[int] = field(default_factory=set)  # 1-based instalments reminded of

    @property
    def agreed(self) -> bool:
        """Approved (whatever became of it since)."""
        return self.decided_on is not None and self.rejection is None

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.instalments), ZERO)

    def paid(self, open_now: Decimal) -> Decimal:
        """What the covered invoices' open amount fell by since the plan was asked for."""
        return max(ZERO, self.total - open_now)

    def unpaid(self, number: int, open_now: Decimal) -> Decimal:
        """What is still owed of instalment ``number`` (1-based), payments counted in date order."""
        through = sum((i.amount for i in self.instalments[:number]), ZERO)
        return min(self.instalments[number - 1].amount, max(ZERO, through - self.paid(open_now)))

    def missed(self, as_of: date, grace_days: int, open_now: Decimal) -> int | None:
        """The first instalment whose due date plus the grace is before ``as_of`` and which is
        not fully paid: the plan is broken by a run of that date."""
        for number, instalment in enumerate(self.instalments, start=1):
            if as_of <= instalment.due_date + timedelta(days=grace_days):
                return None
            if self.unpaid(number, open_now) > ZERO:
                return number
        return None

    def reminders(self, as_of: date, days_before: int, open_now: Decimal) -> list[int]:
        """The instalments a run of ``as_of`` reminds the customer of."""
        return [number for number, instalment in enumerate(self.instalments, start=1)
                if number not in self.reminded
                and instalment.due_date - timedelta(days=days_before) <= as_of <= instalment.due_date
                and self.unpaid(number, open_now) > ZERO]

    def wake_date(self, grace_days: int, days_before: int, open_now: Decimal) -> date | None:
        """The first date a run may act on the plan (a reminder, or breaking it)."""
        if self.status != "active":
            return None
        dates = []
        for number, instalment in enumerate(self.instalments, start=1):
            if self.unpaid(number, open_now) <= ZERO:
                continue
            if number not in self.reminded:
                dates.append(instalment.due_date - timedelta(days=days_before))
            dates.append(instalment.due_date + timedelta(days=grace_days + 1))
        return min(dates, default=None)

    def view(self, customer_id: str, open_now: Decimal | None = None) -> dict[str, Any]:
        """The plan, JSON-native: what the API answers and ``ar.dunning.actions`` carries."""
        currency = self.currency
        found: dict[str, Any] = {
            "plan_id": self.plan_id, "customer_id": customer_id, "currency": currency,
            "status": self.status, "invoice_ids": list(self.invoice_ids),
            "instalments": [{"due_date": i.due_date.isoformat(), "amount": to_text(i.amount, currency)}
                            for i in self.instalments],
            "total": to_text(self.total, currency), "requested_on": self.requested_on.isoformat(),
            "reason": self.reason, "requested_by": self.requested_by,
            "decided_on": self.decided_on.isoformat() if self.decided_on else None,
            "decided_by": self.decided_by, "rejection_reason": self.rejection,
            "closed_on": self.closed_on.isoformat() if self.closed_on else None,
            "broken_instalment": self.broken_instalment,
        }
        if open_now is not None:
            found["paid"] = to_text(self.paid(open_now), currency)
            for number, line in enumerate(found["instalments"], start=1):
                line["unpaid"] = to_text(self.unpaid(number, open_now), currency)
        return found

    @classmethod
    def from_record(cls, plan: dict[str, Any]) -> PaymentPlan:
        """The plan a ``PlanRequested`` event recorded."""
        return cls(
            plan_id=plan["plan_id"], currency=plan["currency"], invoice_ids=tuple(plan["invoice_ids"]),
            instalments=tuple(Instalment(date.fromisoformat(i["due_date"]), Decimal(i["amount"]))
                              for i in plan["instalments"]),
            requested_on=date.fromisoformat(plan["requested_on"]), reason=plan["reason"],
            requested_by=plan["requested_by"])


def instalments_problem(instalments: Sequence[Instalment], covered: Decimal, requested_on: date,
                        currency: str) -> str | None:
    """Why these instalments cannot settle ``covered`` (None: they can)."""
    if not instalments:
        return "a plan needs at least one instalment"
    if any(i.amount <= ZERO for i in instalments):
        return "every instalment must be for a positive amount"
    dates = [i.due_date for i in instalments]
    if dates != sorted(dates):
        return "instalments must be in date order"
    if dates[0] < requested_on:
        return f"the first instalment is due before the plan is requested ({requested_on})"
    total = sum((i.amount for i in instalments), ZERO)
    if total != covered:
        return (f"instalments add up to {to_text(total, currency)} {currency}, the covered invoices' "
                f"open amount is {to_text(covered, currency)} {currency}")
    return None
