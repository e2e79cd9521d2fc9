"""On a seeded random book (every message type), the read side agrees with itself and with
the domain: the three aging strategies give the same rows, aging adds up to the balances and the
open items, a statement of account closes on the balance less unapplied cash, and every
invoice as known at each commit equals the account as it was then.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from sqlalchemy.engine import Connection

from services.ledger.application import LedgerApplication
from services.ledger.domain import account_id
from services.ledger.read import queries
from services.ledger.read.aging import AgingRow, GroupBy, aging
from services.ledger.read.disputed import shown_disputed
from services.ledger.read.projections import LedgerProjector
from services.ledger.read.schema import migrate_read_models
from services.ledger.read.statement import statement
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from tests.integration.test_ledger_projections import START, _book


def _all_rows(conn: Connection, as_of: date, **options: Any) -> list[AgingRow]:
    rows: list[AgingRow] = []
    cursor = None
    while True:
        page = aging(conn, as_of, limit=5, cursor=cursor, **options)
        rows += page.rows
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


@pytest.mark.parametrize(("seed", "backdate"), [(3, 0), (4, 45)])
def test_aging_open_items_balances_and_invoices_agree(database_url: str, seed: int, backdate: int) -> None:
    migrate_read_models(database_url)
    app = LedgerApplication(env=eventsourcing_env(database_url))
    engine = make_engine(database_url)
    try:
        messages = _book(seed, count=400, backdate=backdate)
        instants: list[datetime] = []
        for start in range(0, len(messages), 80):
            batch = app.prepare(messages[start:start + 80])
            recorded = [e.timestamp for a in batch.accounts.values() for e in a.pending_events]
            app.commit(batch, Tracking("test:0", start))
            instants.append(max(recorded))
        projector = LedgerProjector(app, engine)
        position = 0
        while notifications := app.recorder.select_notifications(position + 1, 150):
            projector.apply(notifications)
            position = notifications[-1].id
        customers = sorted({m.customer_id for m in messages})

        with engine.connect() as conn:
            for as_of in (START + timedelta(days=n) for n in (0, 9, 20, 35, 60)):
                for group_by in (GroupBy("customer"), GroupBy("currency")):
                    current = _all_rows(conn, as_of, group_by=group_by, strategy="current")
                    assert current == _all_rows(conn, as_of, group_by=group_by, strategy="movements")
                    assert current == _all_rows(conn, as_of, group_by=group_by, strategy="spans")
                by_customer = {
                    (r.group, r.currency): r for r in _all_rows(conn, as_of, group_by=GroupBy("customer"))
                }
                for customer in customers:
                    # the statement up to as_of closes on the balance: open amount less unapplied
                    # cash, its lines adding up from the opening balance, the running balance too
                    statements = {s.currency: s for s in statement(conn, customer, as_of - timedelta(days=10),
                                                                   as_of)}
                    for entry in queries.balances(conn, customer, as_of):
                        closing = entry["open_amount"] - entry["unapplied_cash"]
                        found = statements.get(entry["currency"])
                        assert (found.closing_balance if found else Decimal(0)) == closing, (customer, as_of)
                        if found:
                            running = found.opening_balance
                            for line in found.lines:
                                running += line["debit"] - line["credit"]
                                assert line["balance"] == running
                            assert running == closing
                            assert found.unapplied_cash == entry["unapplied_cash"]
                    for entry in queries.balances(conn, customer, as_of):
                        row = by_customer.get((customer, entry["currency"]))
                        got = (row.total, row.disputed, row.unapplied_cash) if row else (0, 0, 0)
                        assert got == (
                            entry["open_amount"], entry["disputed_amount"], entry["unapplied_cash"]
                        )
                        if row:
                            assert sum(row.buckets.values(), Decimal(0)) == row.total
                            items = [i for i in queries.open_items(conn, customer, as_of)
                                     if i["currency"] == entry["currency"]]
                            assert sum((i["open_amount"] for i in items), Decimal(0)) == row.total

            # every invoice as known at the end of each commit = the account at that version
            for known_at in instants[1::2]:
                for customer in customers:
                    versions = [e.originator_version for e in app.events.get(account_id(customer))
                                if e.timestamp <= known_at]
                    if not versions:
                        continue
                    account = app.repository.get(account_id(customer), version=max(versions))
                    for invoice in account.invoices.values():
                        row = queries.invoice(conn, invoice.invoice_id, known_at=known_at)
                        assert row is not None
                        assert (row["amount"], row["open_amount"], row["status"], row["settled_date"],
                                row["written_off"], row["discount_taken"],
                                shown_disputed(row["disputed_raw"], row["open_amount"])) == (
                            invoice.amount, invoice.open_amount, invoice.status, invoice.settled_date,
                            invoice.written_off, invoice.discount_taken, invoice.disputed_amount,
                        ), (invoice.invoice_id, known_at)
    finally:
        engine.dispose()
        app.close()
