"""The credit review over the whole book, and the daily scheduler that starts it.

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

The review date is always a parameter. Only the scheduler reads the wall clock, to know
which local date it is when the configured time comes.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic_time
from datetime import date, time
from typing import Any

from sqlalchemy import Engine

from services.credit import queries
from services.credit.application import CreditApplication
from services.credit.domain.registry import review_id
from shared import scheduling
from shared.scheduling import DailyScheduler
from shared.store_writer import StoreWriter

log = logging.getLogger(__name__)

_COUNTS = ("customers", "holds_placed", "holds_changed", "holds_released", "grade_changes",
           "reservations_expired", "limits_expired", "overdue_marked")


class ReviewRunner:
    def __init__(self, app: CreditApplication, engine: Engine, writer: StoreWriter, *, chunk_size: int = 500,
                 catch_up_seconds: float = 60.0) -> None:
        self.app = app
        self.engine = engine
        self.writer = writer
        self.chunk_size = chunk_size
        self.catch_up_seconds = catch_up_seconds
        self._review_lock = asyncio.Lock()  # one review at a time in this process

    async def caught_up(self) -> None:
        """Wait until the projector has processed every event stored so far."""
        await scheduling.caught_up(lambda: self.app.recorder.max_notification_id() or 0,
                                   self._projector_position, self.writer.written,
                                   timeout=self.catch_up_seconds)

    async def run(self, as_of: date) -> dict[str, Any]:
        """The review of ``as_of``: ``{"review_id", "as_of", "repeat", counts..., and on the first
        run the holds placed, changed and released and the grade changes}``."""
        async with self._review_lock:
            registry = await asyncio.to_thread(self.app.review_registry)
            recorded = registry.check(as_of)
            await self.caught_up()  # (a repeat too: its answer then agrees with the read models)
            if recorded is not None:
                return {**recorded, "repeat": True}
            started = monotonic_time.monotonic()
            candidates = await asyncio.to_thread(self._candidates)
            details: dict[str, list[dict[str, Any]]] = {
                "holds_placed": [], "holds_changed": [], "holds_released": [], "grade_changes": []}
            counts = dict.fromkeys(_COUNTS, 0)
            for start in range(0, len(candidates), self.chunk_size):
                chunk = candidates[start:start + self.chunk_size]
                result = await self.writer.run(self.app.review_chunk, chunk, as_of)
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
                    **{name: [_brief(item) for item in items] for name, items in details.items()}}

    def _projector_position(self) -> int:
        with self.engine.connect() as conn:
            return queries.projector_position(conn)

    def _candidates(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(queries.review_candidates(conn))


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    """A hold or grade change as the review answers it (the stored record without its internals)."""
    keep = ("customer_id", "hold_id", "kind", "reasons", "previous_reasons", "released_by", "reason",
            "currency", "exposure", "limit", "overdue_invoices", "risk_grade", "effective_date",
            "previous", "grade", "score", "factors", "as_of")
    return {k: item[k] for k in keep if k in item}


def daily_scheduler(runner: ReviewRunner, run_at: time, zone: str) -> DailyScheduler:
    return DailyScheduler(runner, run_at, zone, what="credit review",
                          describe=lambda result: f"{result['customers']} customers changed")
