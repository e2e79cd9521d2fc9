"""Training on a schedule (issue 20): with ``RECEIVABLES_LEDGER_TRAIN_AT`` the ledger trains and
stores a model version by itself, today's at once when started after the hour (as the daily
dunning run catches up); without it, nothing is trained until asked."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from services.ledger.predictions.schedule import DailyTraining
from services.ledger.predictions.store import versions
from shared.broker import EmbeddedBroker
from tests.integration.ledger_books import LedgerBook
from tests.integration.ledger_harness import InProcessLedger, ledger_settings, poll

WAIT = 60.0


async def test_the_ledger_trains_on_its_schedule(dunning_broker: EmbeddedBroker, database_url: str) -> None:
    scheduled = ledger_settings(dunning_broker.bootstrap, database_url, ledger_train_at="00:00")
    async with InProcessLedger(scheduled) as ledger:
        models = await poll(lambda: ledger.json("/admin/models"), lambda body: len(body["models"]) == 1,
                            timeout=WAIT, what="the scheduled training's version")
    (version,) = models["models"]
    assert version["metrics"] == {"baseline": True}  # (an empty book: too little history for a model)
    assert version["cutoff"].endswith("T00:00:00Z") and version["trained_at"] > version["cutoff"]


async def test_a_days_training_again_answers_the_version_stored(database_url: str) -> None:
    """A service restarted later the same day trains today's again: the same cut-off (the day's
    scheduled instant), so the same version, stored once."""
    book = LedgerBook(database_url)
    try:
        training = DailyTraining(book.engine, time(6, 30), "Europe/Berlin")
        first = await training.run(date(2026, 3, 2))
        again = await training.run(date(2026, 3, 2))
        listed = versions(book.engine)
    finally:
        book.close()
    assert first["cutoff"] == datetime(2026, 3, 2, 5, 30, tzinfo=UTC)  # 06:30 in Berlin, winter time
    assert again["model_version"] == first["model_version"]
    assert [v["model_version"] for v in listed] == [first["model_version"]]


async def test_without_a_schedule_nothing_is_trained(dunning_broker: EmbeddedBroker,
                                                     database_url: str) -> None:
    async with InProcessLedger(ledger_settings(dunning_broker.bootstrap, database_url)) as ledger:
        assert (await ledger.json("/admin/models"))["models"] == []
