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

from services.ledger.api import (
    LEDGER_PROBLEMS,
    accounts,
    advance_receipts,
    audit,
    intake,
    predictions,
    replays,
    reports,
)
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
        for routes in (accounts, intake, reports, advance_receipts, predictions, audit, replays):
            app.include_router(routes.router)
        app.state.engine, app.state.ledger = self.engine, self.app
        app.state.reads = HotReads(self.engine)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test",
                                 headers={"Authorization": f"Bearer {READER}"})


def march_statement_book() -> list[tuple[str, list[dict[str, Any]]]]:
    """A month worked out by hand (``test_ledger_statement``), as (topic, messages) in the order
    they are posted: customer S's invoices (I1 in February; I3 with 2% for payment within 10
    days; I2), two payments allocated (P2 taking I3's discount, P1 part of I1), a credit note
    and a write-off on I2, I9 in April, then P3 without allocation and U's payment on account."""
    discounted = invoice("S", "I3", "1000.00", "2024-03-01", "2024-03-31")
    discounted["data"]["terms"] = {"discount_percent": "2", "discount_days": 10}
    return [
        ("ar.invoices", [invoice("S", "I1", "1000.00", "2024-02-20", "2024-03-21"), discounted,
                         invoice("S", "I2", "500.00", "2024-03-05", "2024-04-04")]),
        ("ar.payments", [payment("S", "P2", "980.00", "2024-03-08", to="I3"),
                         payment("S", "P1", "300.00", "2024-03-10", to="I1")]),
        ("ar.invoices", [event("credit_note.issued", "cn-1", customer_id="S", credit_note_id="CN1",
                               currency="EUR", amount="100.00", issue_date="2024-03-15", invoice_id="I2"),
                         event("invoice.written_off", "wo-1", customer_id="S", invoice_id="I2",
                               amount="50.00", effective_date="2024-03-20", reason="goodwill")]),
        ("ar.invoices", [invoice("S", "I9", "10.00", "2024-04-02", "2024-05-02")]),
        ("ar.payments", [payment("S", "P3", "200.00", "2024-03-25"),
                         payment("U", "PU", "75.00", "2024-03-12")]),
    ]
