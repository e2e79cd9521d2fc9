"""The ledger's settings: the shared ones plus the topics it consumes."""

from __future__ import annotations

from shared.settings import ServiceSettings

INBOUND_TOPICS = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers")


def ledger_settings(**overrides: object) -> ServiceSettings:
    return ServiceSettings.for_service("ledger", **overrides)
