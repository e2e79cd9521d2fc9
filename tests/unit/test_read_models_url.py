"""Where read models live beside an event store (``shared.db.read_models_url``)."""

from __future__ import annotations

import pytest

from shared.db import read_models_url


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:////data/credit.db", "sqlite:////data/credit.read-models.db"),
    ("sqlite:////data/credit.read-models.db", "sqlite:////data/credit.read-models.db"),  # already theirs
    ("sqlite:///rel/receivables.db?timeout=5", "sqlite:///rel/receivables.read-models.db?timeout=5"),
    ("postgresql+psycopg://postgres:secret@db:5432/ar", "postgresql+psycopg://postgres:secret@db:5432/ar"),
])
def test_on_sqlite_a_file_of_their_own_on_postgresql_the_same_database(url: str, expected: str) -> None:
    assert read_models_url(url) == expected
