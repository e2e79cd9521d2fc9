"""The console's and portal's languages: English (the messages as written) and Simplified
Chinese, from the gettext catalogues in ``locale/`` (Babel: ``pybabel extract -F babel.cfg``,
then ``update``; the ``.po`` files are compiled in memory when first used, so no binary
``.mo`` is kept in git).

The language of a request (the ``lang`` cookie, else ``Accept-Language``) is set once per
request by a middleware, so templates and Python code alike translate with :func:`gettext`.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from functools import cache
from importlib.resources import files

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = {"en": "English", "zh": "中文"}
_CATALOGUES = {"zh": "zh_Hans"}
current_language: ContextVar[str] = ContextVar("current_language", default="en")


@cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (English: the messages themselves)."""
    locale = _CATALOGUES.get(language)
    if locale is None:
        return NullTranslations()
    path = files("services.console") / "locale" / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def translate(message: str) -> str:
    """``message`` in the request's language, unformatted (Jinja's i18n extension formats)."""
    return translations(current_language.get()).gettext(message)


def ntranslate(singular: str, plural: str, count: int) -> str:
    return translations(current_language.get()).ngettext(singular, plural, count)


def gettext(message: str, **values: object) -> str:
    text = translations(current_language.get()).gettext(message)
    return text % values if values else text


def ngettext(singular: str, plural: str, count: int, **values: object) -> str:
    text = translations(current_language.get()).ngettext(singular, plural, count)
    return text % {"num": count, **values}


_ = gettext


def N_(message: str) -> str:  # the name gettext tools look for
    """Marks ``message`` for the catalogue without translating it (translated where shown)."""
    return message


# Words the services answer with that pages show translated (`word(status)` in the templates).
SERVICE_WORDS = (
    N_("requested"), N_("active"), N_("completed"), N_("broken"), N_("rejected"), N_("cancelled"),
    N_("open"), N_("kept"), N_("low"), N_("medium"), N_("high"), N_("manual"), N_("automatic"),
    N_("invoice"), N_("adjustment"), N_("cancellation"), N_("credit_note"), N_("payment"), N_("reversal"),
    N_("discount"), N_("write_off"), N_("refund"),
    N_("reached"), N_("no_answer"), N_("left_message"), N_("promised"), N_("disputed"), N_("refused"),
    N_("wrong_contact"),
)
