"""Money, dates and numbers as a person reads them in their language (Babel's CLDR data).

The figures stay ``Decimal`` from the services' JSON to the page: the services send decimal
strings, and a page shows them formatted; the raw string goes along in ``data-value`` so that
a test (or a person with the developer tools) can compare it with the API's.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

LOCALES = {"en": Locale.parse("en_GB"), "zh": Locale.parse("zh_Hans_CN")}
DEFAULT_LANGUAGE = "en"


def language_of(accept_language: str | None, chosen: str | None = None) -> str:
    """The page's language: the one chosen (a ``lang`` cookie), else the first of
    ``Accept-Language`` that the console speaks, else English."""
    if chosen in LOCALES:
        return chosen
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag[:2] in LOCALES:
            return tag[:2]
    return DEFAULT_LANGUAGE


def decimal_of(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value: object, currency: str | None, language: str) -> str:
    """``1500.00`` in EUR: "€1,500.00" in English, "€1,500.00" in Chinese; empty when there is none."""
    amount = decimal_of(value)
    if amount is None:
        return "—"
    if not currency:
        return format_decimal(amount, format="#,##0.00", locale=LOCALES[language])
    return format_currency(amount, currency, locale=LOCALES[language])


def number(value: object, language: str, pattern: str = "#,##0.##") -> str:
    amount = decimal_of(value)
    return "—" if amount is None else format_decimal(amount, format=pattern, locale=LOCALES[language])


def day(value: object, language: str) -> str:
    if not value:
        return "—"
    try:
        parsed = date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return format_date(parsed, format="medium", locale=LOCALES[language])
