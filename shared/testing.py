"""Reusable pytest fixtures: an embedded Kafka broker and throwaway databases.

Load them from ``tests/conftest.py`` with ``pytest_plugins = ["shared.testing"]``.

Fixtures:

* ``kafka_broker`` (session): an :class:`~shared.broker.EmbeddedBroker` on a free
  port. Memory storage: do not ``restart()`` it from a test, that wipes every
  topic for the rest of the session; start a private broker instead.
* ``postgres_url`` (session): base URL of the local PostgreSQL server
  (``postgresql://postgres@127.0.0.1:5432``). Skips loudly when the server is
  down, or fails when ``CI=true``.
* ``database_url`` (function, parametrized ``sqlite``/``postgres``): a SQLAlchemy
  URL to an empty database that is removed after the test.

Plus the :func:`fresh_postgres_database` context manager for ad-hoc databases.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from shared.broker import BrokerError, EmbeddedBroker, start_on_free_port

__all__ = [
    "POSTGRES_BASE_URL",
    "database_url",
    "fresh_postgres_database",
    "kafka_broker",
    "postgres_url",
]

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_BASE_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}"

_POSTGRES_HINT = (
    f"PostgreSQL not reachable at {POSTGRES_HOST}:{POSTGRES_PORT} — start it with: "
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` at the deadline (never sleep
    "long enough"). The synchronous twin of the integration harness's ``poll``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout:.0f}s"
        time.sleep(interval)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _admin_conninfo(base_url: str) -> str:
    """libpq URL for the maintenance database of the server behind *base_url*."""
    url = make_url(base_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(base_url: str = POSTGRES_BASE_URL, *, prefix: str = "test_") -> Iterator[str]:
    """Create a uniquely named, empty database; yield its SQLAlchemy URL; drop it.

    *base_url* may be any PostgreSQL URL (``postgresql://`` or
    ``postgresql+psycopg://``, database part ignored). The yielded URL looks like
    ``postgresql+psycopg://postgres@127.0.0.1:5432/test_<hex>``. The database is
    dropped ``WITH (FORCE)``, so connections left open by the test do not block
    the cleanup.
    """
    name = f"{prefix}{uuid.uuid4().hex[:16]}"
    admin = _admin_conninfo(base_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(base_url).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker for the whole test session; its log is kept under pytest's tmp dir."""
    log_path = tmp_path_factory.mktemp("kafka") / "tansu.log"
    try:
        broker = start_on_free_port(log_path)
    except BrokerError as exc:
        pytest.fail(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Base URL of the local PostgreSQL server; skip (or fail under CI) if it is down."""
    try:
        with psycopg.connect(_admin_conninfo(POSTGRES_BASE_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"{_POSTGRES_HINT} ({type(exc).__name__}: {str(exc).strip()})"
        if _running_in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    yield POSTGRES_BASE_URL


def empty_database(request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """The URL of an empty database of the backend ``request.param`` names (a SQLite file in
    ``directory``, or a fresh PostgreSQL database dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{directory / 'test.db'}"
        return
    # Only the postgres variant depends on the server, so sqlite runs even when it is down.
    base_url: str = request.getfixturevalue("postgres_url")
    with fresh_postgres_database(base_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty database, once per backend."""
    yield from empty_database(request, tmp_path)
