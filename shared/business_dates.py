"""Business dates at the REST edge: the services' one reading of the clock, and what a request
may date (the range of a date itself: ``shared.dates``).

Domain logic never reads the clock: a route passes it the date. A run or a review only goes
forward, so one dated ahead of the clock would refuse every later one and date notices in
the future, with nothing to undo it; the routes that move such state refuse a date beyond
today (UTC) plus ``RECEIVABLES_FUTURE_DATE_TOLERANCE_DAYS`` (default 1, for callers a time
zone ahead). Past dates (simulations, catching up) stay open.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import Request

from shared.problems import REQUEST_INVALID, field_problem

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
        raise field_problem(field, message, title=REQUEST_INVALID)
    return day


def given_or_today(day: date | None, field: str, request: Request) -> date:
    """A request's optional business date: ``day`` checked by :func:`not_ahead_of_clock`, or
    today (UTC) when the request names none."""
    return today_utc() if day is None else not_ahead_of_clock(day, field, request)
