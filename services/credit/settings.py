"""The credit service's settings: the shared ones, the topics it consumes, its rules and scheduler."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import field_validator

from services.credit.domain import CreditRules, default_rules
from shared.settings import ServiceSettings, TimeZoneName

INBOUND_TOPICS = ("ar.ledger.events", "ar.customers", "ar.ratings", "ar.dunning.actions")


class CreditSettings(ServiceSettings):
    """``RECEIVABLES_CREDIT_REVIEW_AT`` (``HH:MM``, local time in ``RECEIVABLES_CREDIT_TIMEZONE``):
    the daily review's time; unset, the service never reviews on its own (``POST /reviews``
    still does). ``RECEIVABLES_CREDIT_RULES_FILE``: a JSON rule set (``CreditRules``) in place
    of the shipped default. ``RECEIVABLES_CREDIT_CHECK_FAST_LANE`` (default true): plain checks
    are answered ahead of the framework (``services.credit.check_fast_lane``); false sends every
    check through the route (``python -m bench.credit --lane off`` measures the difference)."""

    credit_review_at: time | None = None
    credit_timezone: TimeZoneName = "UTC"
    credit_rules_file: Path | None = None
    credit_check_fast_lane: bool = True

    @field_validator("credit_rules_file")
    @classmethod
    def _readable_rules(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_rules(value)  # refuse a bad file at start, naming the field
        return value

    def rules(self) -> CreditRules:
        return load_rules(self.credit_rules_file) if self.credit_rules_file else default_rules()


def load_rules(path: Path) -> CreditRules:
    try:
        return CreditRules.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None


def credit_settings(**overrides: object) -> CreditSettings:
    return CreditSettings.for_service("credit", **overrides)
