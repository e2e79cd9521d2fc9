"""The dates and instants a page takes in its query, checked, with the field named when wrong."""

from __future__ import annotations

from datetime import date, datetime

from services.console.i18n import gettext as _


class BadInput(ValueError):
    """A query or form field a person typed that the console cannot use; the message names it."""


def as_date(field: str, value: str | None, default: str | None = None) -> str | None:
    if not value:
        return default
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise BadInput(_("%(field)s: must be a date such as 2024-01-31, not %(value)r", field=field,
                         value=value[:40])) from None


def as_instant(field: str, value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadInput(_("%(field)s: must be an instant such as 2024-01-31T12:00:00Z, not %(value)r",
                         field=field, value=value[:40])) from None
    return parsed.isoformat()
