"""The dunning service's settings: the shared ones, the topics it consumes, and its scheduler."""

from __future__ import annotations

from datetime import time

from shared.settings import ServiceSettings, TimeZoneName

INBOUND_TOPICS = ("ar.ledger.events", "ar.customers", "ar.credit.events")


class DunningSettings(ServiceSettings):
    """``RECEIVABLES_DUNNING_RUN_AT`` (``HH:MM``, local time in ``RECEIVABLES_DUNNING_TIMEZONE``):
    the daily run's time; unset, the service never runs on its own (``POST /runs`` still does)."""

    dunning_run_at: time | None = None
    dunning_timezone: TimeZoneName = "UTC"


def dunning_settings(**overrides: object) -> DunningSettings:
    return DunningSettings.for_service("dunning", **overrides)
