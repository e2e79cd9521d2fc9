"""The review registry: which dates the credit review has run for, with what outcome (no I/O).

A date is reviewed once; a date before the latest review is refused (``shared.daily_registry``).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from services.credit.domain.errors import CreditError
from shared.daily_registry import DailyRegistry

REVIEW_REGISTRY_ID = uuid5(NAMESPACE_URL, "receivables:credit:review-registry")
REVIEW_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:credit:review")


class ReviewOutOfOrder(CreditError):
    """A review dated before the latest review."""


def review_id(as_of: date) -> str:
    """Deterministic: the review of a date has the same id however often it is asked for."""
    return str(uuid5(REVIEW_NAMESPACE, as_of.isoformat()))


class ReviewRegistry(DailyRegistry, created_event_name="Opened"):
    """The dates reviewed so far, each with its summary."""

    noun = "review"
    id_field = "review_id"
    out_of_order = ReviewOutOfOrder
    run_id = staticmethod(review_id)

    @staticmethod
    def create_id() -> UUID:
        return REVIEW_REGISTRY_ID

    @property
    def reviews(self) -> dict[str, dict[str, Any]]:
        """ISO date -> the review's summary."""
        return self.recorded

    def _record(self, entry: dict[str, Any]) -> None:
        self._recorded(review=entry)

    @event("ReviewRecorded")
    def _recorded(self, review: dict[str, Any]) -> None:
        self._add(review)
