"""Training on a schedule: once a day at the configured local time, the service trains and
stores a model version from what was recorded by then (``store.train``, as ``POST /admin/models``
does), through the shared ``DailyScheduler`` (the one place a service reads the clock). The
cut-off is that day's scheduled instant, so a service restarted later the same day (which
catches up on today's training) answers the version already stored, and every replica
scheduling the same training stores one version."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from services.ledger.predictions.store import train


class DailyTraining:
    """The runner the scheduler calls: ``run(day)`` trains with the cut-off now."""

    what = "model training"

    def __init__(self, engine: Engine, train_at: time, zone: str, seed: int = 7) -> None:
        self.engine = engine
        self.train_at = train_at
        self.zone = ZoneInfo(zone)
        self.seed = seed

    async def run(self, as_of: date) -> dict[str, Any]:
        now = datetime.now(UTC)
        cutoff = datetime.combine(as_of, self.train_at, tzinfo=self.zone).astimezone(UTC)
        return await asyncio.to_thread(train, self.engine, min(cutoff, now), now, self.seed)

    @staticmethod
    def describe(result: dict[str, Any]) -> str:
        return (f"version {result['model_version']} from {result['training_invoices']} invoices "
                f"({result['examples']} examples)")
