"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.broker import EmbeddedBroker
from shared.testing import empty_database
from tests.integration import credit_harness, dunning_harness
from tests.integration.credit_harness import InProcessCredit, credit_settings_for, write_tokens
from tests.integration.dunning_harness import InProcessDunning, dunning_settings_for
from tests.integration.feed_harness import create_service_topics, own_broker
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    create_ledger_topics,
    ledger_settings,
    start_broker,
)
from tests.integration.poison_harness import Stack


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own with the ledger's topics (4 partitions each)."""
    broker = start_broker(tmp_path / "tansu.log")
    try:
        create_ledger_topics(broker)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def dunning_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own with the topics the ledger and dunning use."""
    with own_broker(tmp_path / "tansu.log", dunning_harness.ALL_TOPICS) as broker:
        yield broker


@pytest.fixture
def credit_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own with the topics the ledger, dunning and credit use."""
    topics = {**dunning_harness.ALL_TOPICS, **credit_harness.ALL_TOPICS}
    with own_broker(tmp_path / "tansu.log", topics) as broker:
        yield broker


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[str]:
    """An empty database per backend for a whole module (``database_url`` is per test)."""
    yield from empty_database(request, tmp_path_factory.mktemp("module"))


@pytest.fixture(scope="module")
async def three_services(module_database_url: str, tmp_path_factory: pytest.TempPathFactory
                         ) -> AsyncIterator[Stack]:
    """A broker of the module's own, the ledger, dunning and credit in process on one database,
    and a publisher that takes originals of several MB."""
    directory = tmp_path_factory.mktemp("three-services")
    broker = start_broker(directory / "tansu.log")
    try:
        create_service_topics(broker, {**dunning_harness.ALL_TOPICS, **credit_harness.ALL_TOPICS})
        url, tokens = module_database_url, write_tokens(directory)
        async with InProcessLedger(ledger_settings(broker.bootstrap, url)) as ledger, \
                InProcessDunning(dunning_settings_for(broker.bootstrap, url)) as dunning, \
                InProcessCredit(credit_settings_for(broker.bootstrap, url, tokens)) as credit, \
                Publisher(broker.bootstrap, max_request_size=8 * 1024 * 1024) as publisher:
            backend = "sqlite" if url.startswith("sqlite") else "postgres"
            yield Stack(backend, url, broker, ledger, dunning, credit, publisher)
    finally:
        broker.stop()
