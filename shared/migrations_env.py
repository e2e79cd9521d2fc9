"""The body of every service's Alembic ``env.py``: online migrations of one metadata."""

from __future__ import annotations

import os
from collections.abc import Callable

from alembic import context
from sqlalchemy import MetaData, pool, text
from sqlalchemy import create_engine as _create_engine


def run_migrations(target_metadata: MetaData, default_version_table: str,
                   database: Callable[[str], str] = lambda url: url) -> None:
    """``database``: where the read models are, given the service's database URL (or theirs)."""
    config = context.config
    version_table = config.attributes.get("version_table", default_version_table)
    given = config.get_main_option("sqlalchemy.url") or _url_from_command_line_or_env(default_version_table)
    url = database(given)
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, version_table=version_table,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = _create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          version_table=version_table, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one at a time: the others wait here,
                # then find the schema at head (DDL is transactional on PostgreSQL).
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                   {"name": f"receivables:migrate:{version_table}"})
            context.run_migrations()
    engine.dispose()


def _url_from_command_line_or_env(version_table: str) -> str:
    """For ``alembic -c .../alembic.ini upgrade head``: ``-x url=...``, else the service's
    ``RECEIVABLES_<SERVICE>_DATABASE_URL``, else ``RECEIVABLES_DATABASE_URL``."""
    service = version_table.split("_", 1)[0]
    url = (context.get_x_argument(as_dictionary=True).get("url")
           or os.environ.get(f"RECEIVABLES_{service.upper()}_DATABASE_URL")
           or os.environ.get("RECEIVABLES_DATABASE_URL"))
    if not url:
        raise SystemExit(f"no database URL: pass -x url=... or set "
                         f"RECEIVABLES_{service.upper()}_DATABASE_URL")
    return url
