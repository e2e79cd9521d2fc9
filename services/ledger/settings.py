"""The ledger's settings: the shared ones, the topics it consumes, and when it trains its
payment model on its own."""

from __future__ import annotations

from datetime import time

from shared.settings import ServiceSettings, TimeZoneName

INBOUND_TOPICS = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers")


class LedgerSettings(ServiceSettings):
    """``RECEIVABLES_LEDGER_TRAIN_AT`` (``HH:MM``, local time in ``RECEIVABLES_LEDGER_TRAIN_TIMEZONE``):
    when a new payment-model version is trained each day from what was recorded by then; unset,
    only ``POST /admin/models`` and ``receivables train ledger`` train."""

    ledger_train_at: time | None = None
    ledger_train_timezone: TimeZoneName = "UTC"
