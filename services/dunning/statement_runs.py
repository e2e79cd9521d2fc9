"""Statement runs over the whole book: one statement of account per customer and currency.

A statement run of a date, like a dunning run (``shared.scheduling.BookRunner``):

1. asks the statement-run registry: a date run before answers the statements it issued and
   issues nothing; a date before the latest statement run is refused;
2. waits until the read models have caught up with the event store;
3. reads every customer's figures for the period in two aggregates
   (``queries.statement_figures``) and what deciding needs of each customer
   (``queries.statement_contexts``), then issues the statements in chunks, each saved in one
   transaction through the service's ``StoreWriter`` (``DunningApplication.statement_chunk``:
   the accounts are not loaded);
4. records the run. One interrupted before that is run again: statements already issued
   for the date are not issued twice, and are part of the answer.

Statement runs start when asked (``POST /statement-runs``): how often statements go out is
the credit team's choice, and a policy's ``statement_day`` picks its customers' day.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic_time
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection

from services.dunning import queries
from services.dunning.application import DunningApplication
from services.dunning.domain.registry import StatementRunRegistry, statement_run_id
from services.dunning.domain.statements import period
from shared.scheduling import BookRunner

log = logging.getLogger(__name__)


class StatementRunner(BookRunner[DunningApplication]):
    """The statement run of a date: ``{"statement_run_id", "as_of", "statements", ...}``."""

    what = "statement run"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._periods: dict[date, date | None] = {}  # as_of -> the period_from asked for

    def registry(self) -> StatementRunRegistry:
        return self.app.statement_registry()

    def projector_position(self, conn: Connection) -> int:
        return queries.projector_position(conn)

    async def statements(self, as_of: date, period_from: date | None = None) -> dict[str, Any]:
        """The statement run of ``as_of`` (over the calendar month before it, or from
        ``period_from`` to it)."""
        self._periods[as_of] = period_from
        return await self.run(as_of)

    async def repeat(self, as_of: date, recorded: dict[str, Any]) -> dict[str, Any]:
        return {**recorded, "repeat": True, "statements": await self.read(queries.statements_of, as_of=as_of)}

    async def first_run(self, as_of: date) -> dict[str, Any]:
        started = monotonic_time.monotonic()
        first, last = period(as_of, self._periods.pop(as_of, None))
        book = await asyncio.to_thread(self.app.policy_book)
        earlier = await self.read(queries.statements_of, as_of=as_of)  # a run of this date interrupted
        figures = await self.read(queries.statement_figures, first, last)
        contexts = await self.read(queries.statement_contexts, as_of, figures.keys())
        issued: list[dict[str, Any]] = []
        chunks = self.in_chunks(contexts, self.app.statement_chunk, as_of, figures, book)
        async for statements in chunks:
            issued.extend(statements)
        known = {s["statement_id"] for s in issued}
        statements = [s for s in earlier if s["statement_id"] not in known] + issued
        summary = await self.writer.run(self.app.record_statement_run, as_of, {
            "period_from": first.isoformat(), "period_to": last.isoformat(), "issued": len(statements),
            "confirmations_requested": sum(1 for s in statements if s["confirmation_requested"])})
        log.info("statement run %s (%s to %s): %d customers with figures, %d statements in %.2fs",
                 as_of, first, last, len(figures), len(statements), monotonic_time.monotonic() - started)
        return {**summary, "statement_run_id": statement_run_id(as_of), "repeat": False,
                "statements": statements}

    @staticmethod
    def describe(result: dict[str, Any]) -> str:
        return f"{len(result['statements'])} statements"
