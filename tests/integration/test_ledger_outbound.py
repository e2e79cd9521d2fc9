"""The outbox relay's translation from stored state is the domain event's, byte for byte.

``outbound.StoredTranslator`` reads a stored event's state instead of building the domain
event object; every ``ar.ledger.events`` message it gives must equal what
``outbound.translate`` gives for the same event, fresh from the aggregate and read back
through the mapper, on SQLite and PostgreSQL (which return the originator id differently).
"""

from __future__ import annotations

from collections import Counter

import orjson
from eventsourcing.persistence import Tracking

from bench.book import generate_book
from services.ledger import outbound
from services.ledger.application import LedgerApplication
from shared.erp_events import InvalidMessage, decode_message
from shared.eventstore import eventsourcing_env


def test_stored_translation_equals_the_domain_events(database_url: str) -> None:
    app = LedgerApplication(env=eventsourcing_env(database_url))
    try:
        book = generate_book(customers=40, events=3000, seed=11)
        messages = []
        for record in book.messages:
            try:
                messages.append(decode_message(record.value, key=record.key))
            except InvalidMessage:
                continue
        fresh = []
        for start in range(0, len(messages), 250):
            batch = app.prepare(messages[start:start + 250])
            fresh.extend(e for a in batch.accounts.values() for e in a.pending_events)
            app.commit(batch, Tracking("test:0", start))
        from_fresh = [o for e in fresh for o in outbound.translate(e)]

        stored = outbound.StoredTranslator(app)
        notifications = app.recorder.select_notifications(1, 100_000)
        assert len(notifications) == len(fresh)
        from_state = [o for n in notifications for o in stored(n)]
        from_mapper = [o for n in notifications for o in outbound.translate(app.mapper.to_domain_event(n))]

        # the same bytes, in the same order (fresh events are in commit order per batch
        # only by account, so compare as multisets there)
        assert from_state == from_mapper
        assert Counter(from_state) == Counter(from_fresh)
        kinds = Counter(orjson.loads(o.value)["type"] for o in from_state)
        assert set(kinds) == {
            "ledger.invoice_opened", "ledger.invoice_changed", "ledger.payment_applied",
            "ledger.invoice_settled", "ledger.unapplied_cash_changed", "ledger.invoice_disputed",
            "ledger.dispute_closed", "ledger.customer_updated",
        }, kinds
    finally:
        app.close()
