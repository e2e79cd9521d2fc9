"""Notice texts from Jinja2 templates, one per level and language, kept with the notice.

Templates are ``{name}.{language}.j2`` (``services/dunning/templates/``, shipped as package
data); a level's ``template`` gives the name, its ``templates`` may give another one per
language. A customer's language without a template falls back to the policy's default
language. Undefined variables are errors (``StrictUndefined``), never blank text.

``Renderer.from_package()`` reads the templates once (the service does that at start);
rendering itself touches no files. Templates see ``notice`` (the notice payload),
``customer`` (``customer_id``, ``name``, ``contacts``, ``language``) and the helpers
``money(text)``, ``day(iso_date)`` and ``positive(text)``, formatted for the language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from babel import Locale
from babel.dates import format_date as babel_date
from babel.numbers import format_currency
from jinja2 import DictLoader, Environment, StrictUndefined

from services.dunning.domain.errors import DunningError
from services.dunning.domain.notice import Rendered
from services.dunning.domain.policy import Policy

_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")
_CHINESE = Locale.parse("zh_Hans_CN")


class TemplateMissing(DunningError):
    pass


def format_money(text: str, currency: str, language: str) -> str:
    """``"1250.00"`` as ``1,250.00 EUR`` (en), ``1.250,00 EUR`` (de) or ``EUR 1,250.00`` (zh).

    The digits are the text's (the amounts are quantized to the currency's minor unit before);
    in Chinese the ISO code leads, as on Chinese invoices and bank statements, since ``¥`` alone
    could be yuan or yen (Babel's CLDR pattern for zh_Hans_CN with the code for the symbol)."""
    if language == "zh":
        fraction = text.partition(".")[2]
        pattern = "¤¤ #,##0" + (f".{'0' * len(fraction)}" if fraction else "")
        return format_currency(Decimal(text), currency, format=pattern, locale=_CHINESE,
                               currency_digits=False)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    groups = f"{int(whole):,}"
    if language == "de":
        groups = groups.replace(",", ".")
        number = f"{groups},{fraction}" if fraction else groups
    else:
        number = f"{groups}.{fraction}" if fraction else groups
    return f"{sign}{number} {currency}"


def format_date(text: str, language: str) -> str:
    """An ISO date as ``31 January 2025`` (en), ``31.01.2025`` (de) or ``2025年1月31日`` (zh)."""
    day = date.fromisoformat(text)
    if language == "zh":
        return babel_date(day, format="long", locale=_CHINESE)
    if language == "de":
        return f"{day.day:02d}.{day.month:02d}.{day.year}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


class Renderer:
    """Renders notices from a fixed set of templates (name -> source)."""

    def __init__(self, templates: Mapping[str, str]) -> None:
        self.names = frozenset(templates)
        self._env = Environment(
            loader=DictLoader(dict(templates)), undefined=StrictUndefined, autoescape=False,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )

    @classmethod
    def from_package(cls) -> Renderer:
        """The templates shipped with the service."""
        folder = resources.files("services.dunning").joinpath("templates")
        return cls({entry.name: entry.read_text(encoding="utf-8")
                    for entry in folder.iterdir() if entry.name.endswith(".j2")})

    def resolve(self, policy: Policy, level: int, language: str | None) -> tuple[str, str]:
        """(template file, language) for a level: the customer's language, else the policy's default."""
        spec = policy.level(level)
        for candidate in (language, policy.default_language):
            if candidate and f"{spec.template_for(candidate)}.{candidate}.j2" in self.names:
                return f"{spec.template_for(candidate)}.{candidate}.j2", candidate
        raise TemplateMissing(
            f"policy {policy.name} v{policy.version} level {level}: no template "
            f"{spec.template_for(policy.default_language)}.{policy.default_language}.j2")

    def missing(self, policy: Policy, languages: tuple[str, ...] = ()) -> list[str]:
        """Template files the policy needs that are absent (its default language, and ``languages``)."""
        needed = {f"{level.template_for(language)}.{language}.j2"
                  for level in policy.levels for language in (policy.default_language, *languages)}
        needed |= {f"{name}.{language}.j2"
                   for level in policy.levels for language, name in level.templates.items()}
        return sorted(needed - self.names)

    def named(self, base: str, language: str | None, policy: Policy) -> tuple[str, str]:
        """(template file, language) for a template that is no level's (an instalment reminder,
        a statement): the customer's language, else the policy's default."""
        for candidate in (language, policy.default_language):
            if candidate and f"{base}.{candidate}.j2" in self.names:
                return f"{base}.{candidate}.j2", candidate
        raise TemplateMissing(f"no template {base}.{policy.default_language}.j2")

    def __call__(self, notice: Mapping[str, Any], customer: Mapping[str, Any], policy: Policy) -> Rendered:
        if notice.get("kind", "dunning") == "dunning":
            file, language = self.resolve(policy, int(notice["level"]), str(notice["language"]))
        else:
            file, language = self.named(str(notice["template"]), str(notice["language"]), policy)
        return self.render(file, language, str(notice["currency"]), notice=notice, customer=customer)

    def statement(self, statement: Mapping[str, Any], customer: Mapping[str, Any],
                  policy: Policy) -> Rendered:
        """A statement of account's text, in the customer's language (else the policy's default)."""
        file, language = self.named(str(statement["template"]), str(statement["language"]), policy)
        return self.render(file, language, str(statement["currency"]), statement=statement, customer=customer)

    def render(self, file: str, language: str, currency: str, **context: Any) -> Rendered:
        """A template with the helpers every text uses, formatted for ``language``."""
        text = self._env.get_template(file).render(
            **context, language=language,
            money=lambda amount: format_money(str(amount), currency, language),
            day=lambda iso: format_date(str(iso), language),
            positive=lambda amount: Decimal(str(amount)) > 0,
        )
        return Rendered(template=file.removesuffix(".j2").rsplit(".", 1)[0], language=language, text=text)

