"""The dunning service's settings: the shared ones, the topics it consumes, and its scheduler."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from shared.settings import ServiceSettings

INBOUND_TOPICS = ("ar.ledger.events", "ar.customers")


class DunningSettings(ServiceSettings):
    """``RECEIVABLES_DUNNING_RUN_AT`` (``HH:MM``, local time in ``RECEIVABLES_DUNNING_TIMEZONE``):
    the daily run's time; unset, the service never runs on its own (``POST /runs`` still does)."""

    dunning_run_at: time | None = None
    dunning_timezone: str = "UTC"

    @field_validator("dunning_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value


def dunning_settings(**overrides: object) -> DunningSettings:
    return DunningSettings.for_service("dunning", **overrides)
