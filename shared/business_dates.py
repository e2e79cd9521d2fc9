"""Business dates at the REST edge: the services' one reading of the clock, and what a request
may date.

Domain logic never reads the clock: a route passes it the date. A run or a review only goes
forward, so one dated ahead of the clock would refuse every later one and date notices in
the future, with nothing to undo it; the routes that move such state refuse a date beyond
today (UTC) plus ``RECEIVABLES_FUTURE_DATE_TOLERANCE_DAYS`` (default 1, for callers a time
zone ahead). Past dates (simulations, catching up) stay open.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Request
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from shared.problems import Problem

# The range of a date a request may carry: far beyond any book, short of the calendar's end,
# so that the domain's date arithmetic (due + days, promised + grace) never overflows.
EARLIEST = date(1900, 1, 1)
LATEST = date(2999, 12, 31)
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: Any) -> Any:
    """Only ISO text (or a date) is a date: pydantic would also read ``0`` as 1970-01-01."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date such as 2024-01-31")
    return value


# (JSON Schema has no bounds for a date: the range is said in words)
BusinessDate = Annotated[date, BeforeValidator(_iso_text), Field(ge=EARLIEST, le=LATEST), WithJsonSchema(
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

DEFAULT_TOLERANCE_DAYS = 1


def today_utc() -> date:
    """Today's date in UTC: the default business date of a request."""
    return datetime.now(UTC).date()


def latest_allowed(request: Request) -> date:
    """The latest date a request may move state to: today plus the app's tolerance."""
    settings = getattr(request.app.state, "settings", None)
    days = getattr(settings, "future_date_tolerance_days", DEFAULT_TOLERANCE_DAYS)
    return today_utc() + timedelta(days=days)


def not_ahead_of_clock(day: date, field: str, request: Request) -> date:
    """``day``, or a 422 problem naming ``field`` (e.g. ``body.as_of``) when it lies beyond
    :func:`latest_allowed`."""
    latest = latest_allowed(request)
    if day > latest:
        message = f"{day} is ahead of the service's clock (latest allowed {latest})"
        raise Problem(422, "validation-error", "Request validation failed", f"{field}: {message}",
                      errors=[{"field": field, "message": message}])
    return day
