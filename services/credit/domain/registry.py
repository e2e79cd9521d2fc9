"""The review registry: which dates the credit review has run for, with what outcome (no I/O).

A date is reviewed once: asked again, the registry answers the recorded summary and nothing
runs. A date before the latest review is refused: accounts ignore it anyway (time only goes
forward for them), and an operator asking for it has most likely mistyped the date.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.credit.domain.errors import CreditError

REVIEW_REGISTRY_ID = uuid5(NAMESPACE_URL, "receivables:credit:review-registry")
REVIEW_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:credit:review")


class ReviewOutOfOrder(CreditError):
    """A review dated before the latest review."""


def review_id(as_of: date) -> str:
    """Deterministic: the review of a date has the same id however often it is asked for."""
    return str(uuid5(REVIEW_NAMESPACE, as_of.isoformat()))


class ReviewRegistry(Aggregate):
    """The dates reviewed so far, each with its summary."""

    @staticmethod
    def create_id() -> UUID:
        return REVIEW_REGISTRY_ID

    @event("Opened")
    def __init__(self) -> None:
        self.reviews: dict[str, dict[str, Any]] = {}  # ISO date -> the review's summary
        self.latest: str | None = None

    def check(self, as_of: date) -> dict[str, Any] | None:
        """The recorded review of ``as_of``, None if it is still to run; refuses earlier dates."""
        day = as_of.isoformat()
        if day in self.reviews:
            return self.reviews[day]
        if self.latest is not None and day < self.latest:
            raise ReviewOutOfOrder(
                f"as_of {day} is before the latest review ({self.latest}); reviews only go forward",
                field="as_of")
        return None

    def record(self, as_of: date, summary: dict[str, int]) -> dict[str, Any]:
        """Record the review of ``as_of`` with its counts (a date recorded before keeps its first)."""
        if self.check(as_of) is None:
            self._recorded(review={"review_id": review_id(as_of), "as_of": as_of.isoformat(), **summary})
        return self.reviews[as_of.isoformat()]

    @event("ReviewRecorded")
    def _recorded(self, review: dict[str, Any]) -> None:
        self.reviews[review["as_of"]] = review
        self.latest = max(self.latest or review["as_of"], review["as_of"])
