"""A collector's work on a customer: tasks the runs create and contacts logged by hand (no
I/O, no clock: every date is the caller's business date).

- A notice at a level whose channels include ``phone_task`` or ``visit_task`` creates one
  task (its kind: the first such channel), due on the notice's date, for the customer's
  collector at the time. A collector completes it with an outcome.
- An activity is a contact logged outside the runs (a call, an e-mail, a visit, a letter, a
  note), dated when it happened.

Both belong to the customer's ``DunningAccount``; these are their values and vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, get_args
from uuid import NAMESPACE_URL, uuid5

TASK_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:task")
ACTIVITY_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:activity")

TaskKind = Literal["phone_task", "visit_task"]
Outcome = Literal["reached", "no_answer", "left_message", "promised", "disputed", "refused",
                  "wrong_contact", "visited"]
ActivityKind = Literal["call", "email", "visit", "letter", "note"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
# what counts as a contact with the customer: a note is not one, nor a task whose call went
# unanswered or reached the wrong person
CONTACT_KINDS = frozenset({"call", "email", "visit", "letter"})
CONTACT_OUTCOMES = frozenset(get_args(Outcome)) - {"no_answer", "wrong_contact"}


def task_id(notice_id: str) -> str:
    """Deterministic: the task of a notice has one id however often it is worked out."""
    return str(uuid5(TASK_NAMESPACE, notice_id))


def activity_id(customer_id: str, activity: dict[str, Any]) -> str:
    """Deterministic: the same activity logged twice (a retried request) is one."""
    key = "\x1f".join(str(activity.get(k) or "") for k in (
        "kind", "outcome", "note", "occurred_on", "collector_id"))
    return str(uuid5(ACTIVITY_NAMESPACE, f"{customer_id}\x1f{key}"))


def task_kind(channels: list[str]) -> str | None:
    """The kind of task a notice sent on these channels creates, if any."""
    return next((channel for channel in channels if channel in TASK_KINDS), None)


@dataclass(slots=True)
class Task:
    task_id: str
    notice_id: str
    kind: str
    due_on: date
    collector_id: str | None
    status: str = "open"  # open, done
    outcome: str | None = None
    note: str | None = None
    completed_on: date | None = None
    completed_by: str | None = None

    def view(self, customer_id: str) -> dict[str, Any]:
        return {"task_id": self.task_id, "customer_id": customer_id, "notice_id": self.notice_id,
                "kind": self.kind, "due_on": self.due_on.isoformat(), "collector_id": self.collector_id,
                "status": self.status, "outcome": self.outcome, "note": self.note,
                "completed_on": self.completed_on.isoformat() if self.completed_on else None,
                "completed_by": self.completed_by}
