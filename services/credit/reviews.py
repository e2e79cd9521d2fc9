"""The credit review over the whole book.

A review for a date:

1. asks the review registry: a date reviewed before answers with that review's summary
   once the read models have caught up (nothing runs again: "a second run for the same
   date changes nothing"); a date before the latest review is refused (``ReviewOutOfOrder``);
2. waits until the read models have caught up with the event store, so that the
   candidates (every customer in ``credit_accounts``) include every account recorded
   before the review began;
3. reviews the candidates in chunks, each chunk loaded, decided and saved in one
   transaction by the service's ``StoreWriter`` (the consumer and the credit checks go on
   between chunks): limits and reservations expire, invoices past the overdue rule are
   marked, the risk grade is recorded when it changes, holds follow;
4. records the review in the registry. A review interrupted before that is simply run
   again: accounts already reviewed for the date record nothing more.

Before step 3, with a ledger configured (``RECEIVABLES_LEDGER_URL``), the ledger is asked for
its outlooks of every customer with open receivables (``GET /predictions/customers``) and
they are recorded on the accounts (``LatenessPredicted``), so that the score's
``predicted_lateness`` reads the day's prediction. The ledger not answering stops nothing: the
review goes on with what was recorded before (a prediction counts for two weeks) and says
why in ``predictions``.

The skeleton (one review at a time, the registry, the catching up, the chunks) is
``shared.scheduling.BookRunner``; the scheduler, ``shared.scheduling.daily_scheduler``.
"""

from __future__ import annotations

import logging
import time as monotonic_time
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection, Engine

from services.credit import queries
from services.credit.application import CreditApplication
from services.credit.domain.registry import ReviewRegistry, review_id
from shared.ledger_predictions import Outlooks
from shared.scheduling import BookRunner
from shared.store_writer import StoreWriter

log = logging.getLogger(__name__)

_COUNTS = ("customers", "holds_placed", "holds_changed", "holds_released", "grade_changes",
           "reservations_expired", "limits_expired", "overdue_marked")


class ReviewRunner(BookRunner[CreditApplication]):
    """The credit review of a date: ``{"review_id", "as_of", "repeat", counts..., and on the first
    run the holds placed, changed and released and the grade changes}``."""

    what = "credit review"

    def __init__(self, app: CreditApplication, engine: Engine, writer: StoreWriter, *,
                 outlooks: Outlooks | None = None, **kwargs: Any) -> None:
        super().__init__(app, engine, writer, **kwargs)
        self.outlooks = outlooks or Outlooks(None)

    def registry(self) -> ReviewRegistry:
        return self.app.review_registry()

    def projector_position(self, conn: Connection) -> int:
        return queries.projector_position(conn)

    async def first_run(self, as_of: date) -> dict[str, Any]:
        started = monotonic_time.monotonic()
        predictions = await self.take_predictions(as_of)
        candidates = await self.read(lambda conn: list(queries.review_candidates(conn)))
        details: dict[str, list[dict[str, Any]]] = {
            "holds_placed": [], "holds_changed": [], "holds_released": [], "grade_changes": []}
        counts = dict.fromkeys(_COUNTS, 0)
        async for result in self.in_chunks(candidates, self.app.review_chunk, as_of):
            for name, items in details.items():
                items.extend(getattr(result, name))
            counts["customers"] += result.customers
            counts["reservations_expired"] += result.reservations_expired
            counts["limits_expired"] += result.limits_expired
            counts["overdue_marked"] += result.overdue_marked
        for name, items in details.items():
            counts[name] = len(items)
        summary = await self.writer.run(self.app.record_review, as_of, counts)
        log.info("credit review %s: %d candidates, %d customers changed, %d holds placed, "
                 "%d released in %.2fs", as_of, len(candidates), counts["customers"],
                 counts["holds_placed"], counts["holds_released"], monotonic_time.monotonic() - started)
        return {**summary, "review_id": review_id(as_of), "repeat": False, "candidates": len(candidates),
                "predictions": predictions,
                **{name: [_brief(item) for item in items] for name, items in details.items()}}

    async def take_predictions(self, as_of: date) -> dict[str, Any]:
        """The ledger's outlooks on ``as_of`` recorded on the accounts; what happened, as the
        review answers it: ``{used, model_version, asked, recorded}`` or ``{used: false, reason}``."""
        if self.outlooks.base_url is None:
            return {"used": False, "reason": "no ledger configured (RECEIVABLES_LEDGER_URL)"}
        asked = await self.read(queries.prediction_candidates)
        answer = await self.outlooks.ask(asked, as_of)
        if answer.outlooks is None:
            log.warning("credit review %s: no predictions: %s", as_of, answer.unavailable)
            return {"used": False, "reason": answer.unavailable}
        by_customer: dict[str, list[dict[str, Any]]] = {customer_id: [] for customer_id in asked}
        for (customer_id, currency), outlook in answer.outlooks.items():
            by_customer.setdefault(customer_id, []).append({
                "currency": currency, "predicted_days_late": outlook.predicted_days_late,
                "expected_loss": outlook.expected_loss})
        version = answer.model_version or "unknown"
        recorded = 0
        async for count in self.in_chunks(list(by_customer), self._record, by_customer, as_of, version):
            recorded += count
        return {"used": True, "model_version": version, "asked": len(asked), "recorded": recorded}

    def _record(self, chunk: list[str], outlooks: dict[str, list[dict[str, Any]]], as_of: date,
                version: str) -> int:
        return self.app.record_predictions({c: outlooks[c] for c in chunk}, as_of, version)

    @staticmethod
    def describe(result: dict[str, Any]) -> str:
        return f"{result['customers']} customers changed"


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    """A hold or grade change as the review answers it (the stored record without its internals)."""
    keep = ("customer_id", "hold_id", "kind", "reasons", "previous_reasons", "released_by", "reason",
            "currency", "exposure", "limit", "overdue_invoices", "risk_grade", "effective_date",
            "previous", "grade", "score", "factors", "as_of")
    return {k: item[k] for k in keep if k in item}
