"""The business dates every edge accepts (ERP messages, REST requests): ISO text within a range
far beyond any book and short of the calendar's end, so that the domain's date arithmetic
(due + days, promised + grace, review + 61 days) never overflows.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

# The range of a date a message or request may carry.
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> date:
    """Only ISO text ``YYYY-MM-DD`` (or a date) within the range is a date: pydantic would also
    read ``0`` as 1970-01-01 and a midnight timestamp as its day. (One function, parsing too:
    it runs for every date of every message.)"""
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise ValueError("must be an ISO 8601 date such as 2024-01-31")
        try:
            day = date.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"{value!r} is not a date: {error}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        day = value
    else:
        raise ValueError("must be an ISO 8601 date such as 2024-01-31")
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{day} is outside the dates accepted, {EARLIEST} to {LATEST}")
    return day


def _iso_text(value: Any) -> Any:
    """Only ISO text (or a datetime) is an instant."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 instant such as 2024-01-31T12:00:00Z")
    return value


# (JSON Schema has no bounds for a date: the range is said in words)
BusinessDate = Annotated[date, BeforeValidator(_iso_date), WithJsonSchema(
    {"type": "string", "format": "date", "description": f"ISO date from {EARLIEST} to {LATEST}"})]


def _in_utc(instant: datetime) -> datetime:
    """The instant in UTC (without an offset it is taken as UTC), inside the business range."""
    try:
        utc = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant lies outside the calendar") from None
    if not EARLIEST <= utc.date() <= LATEST:
        raise ValueError(f"the instant must lie between {EARLIEST} and {LATEST}")
    return utc


# An instant a request may carry (``known_at``): in UTC once validated, in the same range.
BusinessInstant = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]
