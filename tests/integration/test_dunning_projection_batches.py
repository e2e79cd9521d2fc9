"""Dunning's read models do not depend on where the follower's batches end.

The projector writes a batch's rows in one transaction; an invoice row's ``updated_at`` is the
time of the last event that touched that invoice, not of the account's last event in the
batch, so projecting one notification at a time and the whole log at once give the same rows.
The store is the one the previous version wrote (``tests/data/previous_stores``, on SQLite or
copied into PostgreSQL): every kind of dunning event, runs and promises included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.dunning.application import DunningApplication
from services.dunning.projections import DunningProjector, metadata
from services.dunning.service import migrate_read_models
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.follower import SharedLog
from shared.testing import fresh_postgres_database
from tests.integration.test_previous_stores import Stores, stores

__all__ = ["stores"]  # (the fixture, imported)


@pytest.fixture
def read_models(request: pytest.FixtureRequest, stores: Stores, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of the stores' backend for the read models."""
    if stores.backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'all.db'}"
        return
    base_url: str = request.getfixturevalue("postgres_url")
    with fresh_postgres_database(base_url) as one, fresh_postgres_database(base_url) as other:
        yield one, other


async def _project(store_url: str, models_url: str, batch: int) -> dict[str, list[tuple[str, ...]]]:
    migrate_read_models(models_url)
    app = DunningApplication(env=eventsourcing_env(store_url, cache_size=None))
    engine = make_engine(models_url, writer=True)
    try:
        projector, log = DunningProjector(app, engine), SharedLog(app)
        position = projector.position()
        while notifications := log.read(position + 1, batch):
            await projector.process(notifications)
            position = notifications[-1].id
        with engine.connect() as conn:
            return {table.name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
                    for table in metadata.sorted_tables if not table.name.endswith("positions")}
    finally:
        engine.dispose()
        app.close()


async def test_one_notification_at_a_time_and_all_at_once_give_the_same_rows(
    stores: Stores, read_models: tuple[str, str]
) -> None:
    one_by_one = await _project(stores.urls["dunning"], read_models[0], 1)
    at_once = await _project(stores.urls["dunning"], read_models[1], 10_000)
    assert one_by_one["dunning_invoices"], "the store's invoices were projected"
    assert one_by_one == at_once
