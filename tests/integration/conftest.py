"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker import EmbeddedBroker
from tests.integration.ledger_harness import create_ledger_topics, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of the test's own with the ledger's topics (4 partitions each)."""
    broker = start_broker(tmp_path / "tansu.log")
    try:
        create_ledger_topics(broker)
        yield broker
    finally:
        broker.stop()
