"""A ledger on a real database, fed message by message, for the read-side tests.

``LedgerBook.post(*events)`` applies contract CloudEvents through the real application
(one commit) and projector, and returns the instant the last of their events was recorded:
a ``known_at`` that sees this batch and nothing after it. ``api()`` serves the real routers
over that database (no Kafka) through an in-process ASGI client.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.ledger.api import LEDGER_PROBLEMS, accounts, audit, intake, replays, reports
from services.ledger.application import LedgerApplication
from services.ledger.read.projections import LedgerProjector
from services.ledger.read.schema import migrate_read_models
from shared.auth import install_auth
from shared.db import make_engine
from shared.erp_events import parse_envelope, validate_event
from shared.eventstore import eventsourcing_env
from shared.hot_reads import HotReads
from shared.problems import install_problem_handlers
from shared.settings import ServiceSettings

READER = "reader-token-0123456789"
WRITER_ONLY = "writer-token-0123456789"
OPERATOR = "operator-token-0123456789"  # ops:replay, named "ops-alice"


def event(event_type: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "erp/books", "type": event_type,
            "subject": data["customer_id"], "data": data}


def invoice(customer: str, invoice_id: str, amount: str, issue: str, due: str, *, currency: str = "EUR",
            **attributes: str) -> dict[str, Any]:
    return event("invoice.issued", f"inv-{invoice_id}", customer_id=customer, invoice_id=invoice_id,
                 amount=amount, issue_date=issue, due_date=due, currency=currency,
                 **({"attributes": attributes} if attributes else {}))


def payment(customer: str, payment_id: str, amount: str, received: str, *, currency: str = "EUR",
            to: str | None = None) -> dict[str, Any]:
    allocations = [{"invoice_id": to, "amount": amount}] if to else []
    return event("payment.received", f"pay-{payment_id}", customer_id=customer, payment_id=payment_id,
                 amount=amount, received_date=received, currency=currency, allocations=allocations)


class LedgerBook:
    def __init__(self, database_url: str) -> None:
        migrate_read_models(database_url)
        self.app = LedgerApplication(env=eventsourcing_env(database_url))
        self.engine = make_engine(database_url)
        self.projector = LedgerProjector(self.app, self.engine)
        self.position = 0
        self.offset = 0

    def close(self) -> None:
        self.engine.dispose()
        self.app.close()

    def post(self, *events: dict[str, Any], topic: str | None = None) -> datetime:
        messages = []
        for item in events:
            self.offset += 1
            where = {"topic": topic, "partition": 3, "offset": self.offset} if topic else {}
            messages.append(validate_event(parse_envelope(item), **where))
        batch = self.app.prepare(messages)
        assert not batch.refusals, batch.refusals
        recorded = max(e.timestamp for a in batch.accounts.values() for e in a.pending_events)
        self.app.commit(batch, None)
        self.project()
        return recorded

    def project(self) -> None:
        while notifications := self.app.recorder.select_notifications(self.position + 1, 500):
            self.projector.apply(notifications)
            self.position = notifications[-1].id

    def api(self, tmp_path: Path) -> httpx.AsyncClient:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps({READER: ["ledger:read"], WRITER_ONLY: ["ledger:write"],
                                      OPERATOR: {"name": "ops-alice", "scopes": ["ops:replay"]}}))
        app = FastAPI()
        install_problem_handlers(app, LEDGER_PROBLEMS)
        install_auth(app, ServiceSettings.for_service("ledger", api_tokens_file=tokens))
        for routes in (accounts, intake, reports, audit, replays):
            app.include_router(routes.router)
        app.state.engine, app.state.ledger = self.engine, self.app
        app.state.reads = HotReads(self.engine)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test",
                                 headers={"Authorization": f"Bearer {READER}"})
