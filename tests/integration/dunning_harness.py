"""Helpers for driving the dunning service through the real broker, fed by the real ledger.

- ``ALL_TOPICS``: the ledger's topics plus ``ar.dunning.actions`` and ``ar.credit.events`` (4
  partitions);
- :class:`InProcessDunning`: the dunning app under uvicorn in the test's event loop;
- :func:`dunning_settings_for`: settings for a test, with the dunning event store in a
  SQLite file of its own (the library names SQLite tables the same for every app) or in the
  ledger's PostgreSQL database (there its tables are ``dunning_*``);
- :func:`profile`, :func:`dispute_resolved`: ERP messages the ledger harness lacks.
"""

from __future__ import annotations

from typing import Any

from services.dunning.settings import DunningSettings
from tests.integration.feed_harness import found, service_database_url
from tests.integration.ledger_harness import (
    PARTITIONS,
    SESSION_TIMEOUT_MS,
    TOPICS,
    InProcessApp,
    cloud_event,
)

ACTIONS_TOPIC = "ar.dunning.actions"
CREDIT_TOPIC = "ar.credit.events"  # (dunning follows credit's risk grades)
ALL_TOPICS = {**TOPICS, ACTIONS_TOPIC: PARTITIONS, CREDIT_TOPIC: PARTITIONS}


def dunning_settings_for(bootstrap: str, database_url: str, **overrides: Any) -> DunningSettings:
    return DunningSettings.for_service(
        "dunning", kafka_bootstrap=bootstrap, database_url=service_database_url(database_url, "dunning"),
        auth="disabled", dev_mode=True, session_timeout_ms=SESSION_TIMEOUT_MS, **overrides,
    )


def profile(customer: str, *, event_id: str, **fields: Any) -> dict[str, Any]:
    return cloud_event("customer.upserted", {"customer_id": customer, "name": f"{customer} Ltd", **fields},
                       event_id=event_id)


def dispute_resolved(customer: str, dispute: str, invoice: str, outcome: str, resolved: str,
                     **fields: Any) -> dict[str, Any]:
    return cloud_event("dispute.resolved", {
        "dispute_id": dispute, "invoice_id": invoice, "customer_id": customer, "outcome": outcome,
        "resolved_date": resolved, **fields,
    }, event_id=f"dsr-{dispute}")


class InProcessDunning(InProcessApp):
    """The dunning app under uvicorn in the current event loop (``async with``)."""

    name = "dunning"

    def __init__(self, settings: DunningSettings) -> None:
        from services.dunning.service import create_app

        super().__init__(create_app(settings))

    async def post(self, path: str, body: Any) -> Any:
        return await self.http.post(path, json=body)

    async def put(self, path: str, body: Any) -> Any:
        return await self.http.put(path, json=body)

    async def delete(self, path: str) -> Any:
        return await self.http.delete(path)

    async def view(self, customer_id: str) -> dict[str, Any] | None:
        return found(await self.get(f"/customers/{customer_id}/dunning"))
