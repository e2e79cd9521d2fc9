"""The read models agree with the domain, to the cent, on SQLite and PostgreSQL.

A seeded random book (all message types, duplicates, payments before invoices) goes
through the real application and projector; every invoice row and every balance must
equal what the aggregates hold, the money invariant must hold in the read models, and a
rebuild from the event store must give identical tables.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from alembic import command
from alembic.config import Config
from eventsourcing.persistence import Tracking
from sqlalchemy import select

from services.ledger.application import LedgerApplication
from services.ledger.read.projections import LedgerProjector, balances, invoices
from services.ledger.read.queries import balances as balances_as_of
from services.ledger.read.schema import MIGRATIONS, migrate_read_models
from services.ledger.replay.online import OnlineReplay, checksums
from shared.db import make_engine
from shared.erp_events import InboundMessage, parse_envelope, validate_event
from shared.eventstore import eventsourcing_env

START = date(2026, 1, 1)


def _book(seed: int, customers: int = 12, count: int = 600, backdate: int = 0) -> list[InboundMessage]:
    """A random book of every message type; ``backdate``: each message dated up to that many
    days before the previous ones (payments, adjustments, cancellations effective in the past)."""
    rng = random.Random(seed)
    messages: list[InboundMessage] = []
    issued: dict[str, list[str]] = {f"C{i}": [] for i in range(customers)}
    payments: dict[str, list[str]] = {c: [] for c in issued}

    def emit(kind: str, customer: str, **data: object) -> None:
        envelope = {"specversion": "1.0", "id": f"m{len(messages)}", "source": "erp/test",
                    "type": kind, "subject": customer, "data": {"customer_id": customer, **data}}
        messages.append(validate_event(parse_envelope(envelope)))

    def amount(low: int, high: int) -> str:
        return f"{rng.randint(low, high)}.{rng.randint(0, 99):02d}"

    for n in range(count):
        customer = rng.choice(list(issued))
        day = START + timedelta(days=n // 10 - (rng.randint(0, backdate) if backdate else 0))
        currency = rng.choice(["EUR", "EUR", "USD"])
        roll = rng.random()
        if roll < 0.35 or not issued[customer]:
            invoice_id = f"I{n}"
            terms = {"discount_percent": "2", "discount_days": 10} if rng.random() < 0.3 else None
            emit("invoice.issued", customer, invoice_id=invoice_id, issue_date=day.isoformat(),
                 due_date=(day + timedelta(days=30)).isoformat(), currency=currency,
                 amount=amount(50, 900), **({"terms": terms} if terms else {}))
            issued[customer].append(invoice_id)
        elif roll < 0.65:
            payment_id = f"P{n}"
            allocations = []
            if rng.random() < 0.3:
                allocations = [{"invoice_id": rng.choice(issued[customer] + [f"I{n + 3}"]),
                                "amount": amount(10, 60)}]
            emit("payment.received", customer, payment_id=payment_id, currency=currency,
                 amount=amount(60, 700), received_date=day.isoformat(), allocations=allocations)
            payments[customer].append(payment_id)
        elif roll < 0.72:
            emit("credit_note.issued", customer, credit_note_id=f"N{n}", currency=currency,
                 amount=amount(5, 80), issue_date=day.isoformat(),
                 **({"invoice_id": rng.choice(issued[customer])} if rng.random() < 0.5 else {}))
        elif roll < 0.78:
            emit("dispute.opened", customer, dispute_id=f"D{n}", invoice_id=rng.choice(issued[customer]),
                 amount=amount(5, 40), opened_date=day.isoformat(), reason="quality")
        elif roll < 0.82:
            emit("dispute.resolved", customer, dispute_id=f"D{rng.randint(0, n)}",
                 invoice_id=rng.choice(issued[customer]), resolved_date=day.isoformat(),
                 outcome="accepted", credited_amount=amount(1, 20))
        elif roll < 0.86:
            emit("invoice.adjusted", customer, invoice_id=rng.choice(issued[customer]),
                 new_amount=amount(10, 900), effective_date=day.isoformat(), reason="price")
        elif roll < 0.88:
            emit("invoice.cancelled", customer, invoice_id=rng.choice(issued[customer]),
                 effective_date=day.isoformat(), reason="error")
        elif roll < 0.91:
            emit("invoice.written_off", customer, invoice_id=rng.choice(issued[customer]),
                 amount=amount(1, 30), effective_date=day.isoformat(), reason="bad debt")
        elif roll < 0.94 and payments[customer]:
            emit("payment.reversed", customer, payment_id=rng.choice(payments[customer]),
                 effective_date=day.isoformat(), reason="bounced")
        elif roll < 0.97:
            emit("customer.upserted", customer, name=f"Customer {customer}", country="DE")
        else:
            messages.append(rng.choice(messages))  # a redelivery
    return messages


@pytest.mark.parametrize("seed", [1, 2])
def test_read_models_equal_the_domain_and_rebuild_identically(database_url: str, seed: int) -> None:
    migrate_read_models(database_url)
    app = LedgerApplication(env=eventsourcing_env(database_url))
    engine = make_engine(database_url)
    try:
        messages = _book(seed)
        for start in range(0, len(messages), 97):  # uneven batches, as a consumer would see them
            batch = app.prepare(messages[start:start + 97])
            app.commit(batch, Tracking("test:0", start + 96))
        projector = LedgerProjector(app, engine)
        position = 0
        while notifications := app.recorder.select_notifications(position + 1, 150):
            projector.apply(notifications)
            position = notifications[-1].id

        accounts = {m.customer_id: app.account(m.customer_id) for m in messages}
        with engine.connect() as conn:
            rows = {r.invoice_id: r for r in conn.execute(select(invoices))}
            balance_rows = {(r.customer_id, r.currency): r for r in conn.execute(select(balances))}
            for customer_id, account in accounts.items():
                assert account is not None
                for invoice in account.invoices.values():
                    row = rows[invoice.invoice_id]
                    assert (
                        row.open_amount, row.status, row.settled_date, row.amount, row.written_off,
                        row.discount_taken, min(row.disputed_raw, row.open_amount),
                    ) == (
                        invoice.open_amount, invoice.status, invoice.settled_date, invoice.amount,
                        invoice.written_off, invoice.discount_taken, invoice.disputed_amount,
                    ), invoice.invoice_id
                for currency in account.currencies():
                    totals = account.totals(currency)
                    row = balance_rows.get((customer_id, currency))
                    got = (row.open_amount, row.disputed_amount, row.unapplied_cash) if row else (0, 0, 0)
                    assert got == (totals["open"], totals["disputed"], totals["unapplied"])
                    # the money invariant, from the read models' side
                    assert (totals["invoiced"] - totals["credited"] - totals["written_off"]
                            - totals["discounts"] - totals["received"]) == got[0] - got[2]
                # as of a date after everything, the movements give the same balances
                far = date(2030, 1, 1)
                for entry in balances_as_of(conn, customer_id, far):
                    totals = account.totals(entry["currency"])
                    assert (entry["open_amount"], entry["unapplied_cash"], entry["disputed_amount"]) == (
                        totals["open"], totals["unapplied"], totals["disputed"]
                    )
                    assert entry["open_amount"] >= Decimal(0) and entry["unapplied_cash"] >= Decimal(0)

        live = checksums(engine)
        writer = make_engine(database_url, writer=True)
        try:
            result = OnlineReplay(app, writer, batch_size=211).run(verify=True)
        finally:
            writer.dispose()
        assert result.position == position and result.checksums == live
        assert checksums(engine) == live

        # migration 0003 fills the invoices' first and last effective dates as the projector does
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        config.attributes["version_table"] = "ledger_alembic_version"
        command.downgrade(config, "0002")
        command.upgrade(config, "head")
        assert checksums(engine) == live
    finally:
        engine.dispose()
        app.close()
