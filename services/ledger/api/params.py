"""What the ledger's routes take besides ``shared.dependencies``: the business date
(``as_of``) and recorded instant (``known_at``) a read may be asked at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from shared.dates import BusinessDate, BusinessInstant

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
