"""What the ledger's routes take: the engine and the runtime from the app's state, and the
business date (``as_of``) and recorded instant (``known_at``) a read may be asked at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine

from shared.dates import BusinessDate, BusinessInstant
from shared.runtime import ServiceRuntime


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


EngineDep = Annotated[Engine, Depends(get_engine)]
RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
AsOf = Annotated[BusinessDate | None, Query(description="business date; default today (UTC)")]
KnownAt = Annotated[BusinessInstant | None, Query(
    description="answer as recorded up to this instant (ISO 8601; without an offset, UTC)"
)]


def as_utc(instant: datetime | None) -> datetime | None:
    """A ``known_at`` in UTC, as instants are recorded (naive means UTC).

    SQLite keeps timestamps as UTC text without an offset, so an instant given with another
    offset must be converted before it is compared.
    """
    if instant is None:
        return None
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)
