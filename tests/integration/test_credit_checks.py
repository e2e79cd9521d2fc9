"""The check desk on a real event store (SQLite and PostgreSQL): concurrent checks are decided
one after the other in memory, saved together, reserve only what the limit allows, and are
answered again from memory; a rebuilt account agrees with the cached one."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import pytest

from services.credit.application import CreditApplication
from services.credit.checks import CheckDesk
from services.credit.domain import ConflictingCheck, InvalidAmount
from shared.eventstore import eventsourcing_env
from shared.metrics import ServiceMetrics


async def test_concurrent_checks_are_saved_in_groups_and_never_reserve_past_the_limit(
    database_url: str,
) -> None:
    app = CreditApplication(env=eventsourcing_env(database_url))
    metrics = ServiceMetrics("credit")
    desk = CheckDesk(app, asyncio.Lock(), metrics)
    try:
        await asyncio.to_thread(app.set_limit, "C1", "EUR", Decimal("1000.00"), "carol", None, None)
        day = date(2025, 3, 1)
        # 150 orders of 10.00 at once: the first 100 fit the limit, the rest go to review
        answers = await asyncio.gather(*(desk.check("C1", f"O{i}", Decimal("10.00"), "EUR", day)
                                         for i in range(150)))
        decisions = [a["decision"] for a in answers]
        assert decisions == ["approve"] * 100 + ["review"] * 50
        assert answers[99]["available_credit"] == "10.00" and answers[100]["available_credit"] == "0.00"
        groups = metrics.registry.get_sample_value("receivables_credit_check_group_size_count")
        assert groups is not None and groups < 150  # saved together, not one transaction each
        # answered again from memory: the same answers, nothing stored
        stored = app.recorder.max_notification_id()
        again = await asyncio.gather(*(desk.check("C1", f"O{i}", Decimal("10.00"), "EUR", day)
                                       for i in range(150)))
        assert again == answers and app.recorder.max_notification_id() == stored
        with pytest.raises(ConflictingCheck):
            await desk.check("C1", "O1", Decimal("11.00"), "EUR", day)
        with pytest.raises(InvalidAmount):
            await desk.check("C1", "O-bad", Decimal("0.001"), "EUR", day)
        # what the store holds agrees with the cache
        fresh = await asyncio.to_thread(app.account, "C1", fresh=True)
        assert fresh is not None and fresh.exposure("EUR") == Decimal("1000.00")
        assert fresh.checks == app.cached_account("C1").checks  # type: ignore[union-attr]
    finally:
        await desk.stop()
        app.close()
