"""Write the event stores of a small book with the PREVIOUS code (commit b96bfc3), for
``tests/integration/test_previous_stores.py``.

This script was run at commit b96bfc3 (the dunning and credit accounts still kept their own
copies of the ledger's invoices and disputes), from a worktree of that commit::

    git worktree add --detach /tmp/wt-old b96bfc3
    cd /tmp/wt-old && PYTHONPATH=$PWD python <this repo>/tests/data/previous_stores/write_stores.py \\
        <this repo>/tests/data/previous_stores

It writes, into the directory given (default: its own):

- ``ledger.sqlite``, ``dunning.sqlite``, ``credit.sqlite``: the three event stores
  (``eventsourcing_env("sqlite:///...")``), no read models;
- ``ledger_messages.json``: every message the dunning and credit applications consumed, raw,
  in the order consumed: ``{topic, key, value}`` (``value`` the message's UTF-8 JSON text);
  ``ar.ledger.events`` messages are what ``services.ledger.outbound.translate`` made of the
  ledger's events, ``ar.customers`` the ERP's profiles as sent;
- ``expected.json``: what the previous code showed: per customer the dunning account's
  ``view()``, the credit account's ``view(as_of=VIEW_AS_OF)`` and the ledger account's
  figures (``totals`` per currency, the invoices' and credits' public attributes); per store
  the number of events and the (topic, count) of their classes; and the messages the previous
  decoder refused (dead-lettered) with the reason.

The book: seven customers, every ERP message type (invoices with terms and with
``attributes.order_id``, adjusted, cancelled, written off; credit notes applied and on
account; payments full, partial, over, unallocated, over several invoices; a reversal of a
payment that paid invoices and of one that paid nothing; disputes opened, accepted with a
credit, rejected; profiles with credit limits, dunning policies, languages, do_not_dun, and
one sent again unchanged: the ledger only acknowledges it) fed
through ``LedgerApplication``, the ledger's events translated and fed to
``DunningApplication`` and ``CreditApplication``; dunning runs over several dates (notices,
an escalation, a promise kept, a promise broken, a stored policy); credit checks (approve and
reserve, consumed by the order's invoice; hold; review), reviews (overdue marks, holds placed
and changed, limits expired and due for review, reservations expired, risk grades), a manual
hold and release, limits set over REST, an automatic hold released by a user (override) and
lapsing.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from services.credit.application import CreditApplication
from services.credit.domain import CreditAccount
from services.dunning.application import DunningApplication
from services.dunning.domain import Policy
from services.ledger.application import LedgerApplication
from services.ledger.outbound import translate
from shared.erp_events import InvalidMessage, parse_envelope, validate_event
from shared.eventstore import eventsourcing_env
from shared.ledger_feed import decode

D = date.fromisoformat
M = Decimal
VIEW_AS_OF = "2025-06-30"  # the date the credit views are taken at
LEDGER_TOPIC = "ar.ledger.events"
ERP_TOPICS = {"invoice": "ar.invoices", "credit_note": "ar.invoices", "payment": "ar.payments",
              "dispute": "ar.disputes", "customer": "ar.customers"}
CUSTOMERS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]


class Book:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for old in directory.glob("*.sqlite*"):
            old.unlink()
        self.ledger = LedgerApplication(env=eventsourcing_env(f"sqlite:///{directory / 'ledger.sqlite'}"))
        self.dunning = DunningApplication(env=eventsourcing_env(f"sqlite:///{directory / 'dunning.sqlite'}"))
        self.credit = CreditApplication(env=eventsourcing_env(f"sqlite:///{directory / 'credit.sqlite'}"))
        self.messages: list[dict[str, str]] = []  # consumed by dunning and credit, raw
        self.dead_letters: list[dict[str, str]] = []
        self.erp_ids = 0

    # ---------------------------------------------------------------- ERP -> ledger -> followers

    def send(self, kind: str, customer: str, *, also_on_customers_topic: bool = False, **data: Any) -> None:
        self.erp_ids += 1
        envelope = {"specversion": "1.0", "id": f"erp-{self.erp_ids:04d}", "source": "erp/eu-1", "type": kind,
                    "subject": customer, "data": {"customer_id": customer, **data}}
        message = validate_event(parse_envelope(envelope), topic=ERP_TOPICS[kind.split(".")[0]], partition=0,
                                 offset=self.erp_ids)
        batch = self.ledger.prepare([message])
        assert not batch.refusals, batch.refusals
        outbound = [o for account in batch.accounts.values() for event in account.pending_events
                    for o in translate(event)]
        self.ledger.commit(batch)
        raw = [{"topic": o.topic, "key": o.key, "value": o.value.decode()} for o in outbound]
        if also_on_customers_topic:  # the ERP's profile as dunning and credit get it on ar.customers
            raw.insert(0, {"topic": "ar.customers", "key": customer,
                           "value": orjson.dumps(envelope).decode()})
        self.feed(raw)

    def feed(self, raw: list[dict[str, str]]) -> None:
        facts = []
        for message in raw:
            self.messages.append(message)
            try:
                facts.append(decode(message["value"].encode(), topic=message["topic"],
                                    key=message["key"].encode()))
            except InvalidMessage as error:  # the consumer would dead-letter it
                self.dead_letters.append({**message, "reason": error.reason})
        for app in (self.dunning, self.credit):
            batch = app.prepare(facts)
            assert not batch.refusals, batch.refusals
            app.commit(batch)

    def invoice(self, customer: str, invoice_id: str, amount: str, issue: str, due: str,
                currency: str = "EUR", **extra: Any) -> None:
        self.send("invoice.issued", customer, invoice_id=invoice_id, amount=amount, issue_date=issue,
                  due_date=due, currency=currency, **extra)

    def pay(self, customer: str, payment_id: str, amount: str, received: str, currency: str = "EUR",
            allocations: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send("payment.received", customer, payment_id=payment_id, amount=amount, received_date=received,
                  currency=currency, method="transfer",
                  allocations=[{"invoice_id": i, "amount": a} for i, a in allocations])

    def profile(self, customer: str, **fields: Any) -> None:
        self.send("customer.upserted", customer, name=f"{customer} Ltd", **fields)

    # ---------------------------------------------------------------- commands

    def run(self, day: str) -> None:
        book = self.dunning.policy_book()
        result = self.dunning.run_chunk(CUSTOMERS, D(day), book)
        self.dunning.record_run(D(day), notices=len(result.notices), customers=result.customers,
                                broken_promises=result.broken_promises)

    def review(self, day: str) -> None:
        chunk = self.credit.review_chunk(CUSTOMERS, D(day))
        self.credit.record_review(D(day), {
            "customers": chunk.customers, "holds_placed": len(chunk.holds_placed),
            "holds_changed": len(chunk.holds_changed), "holds_released": len(chunk.holds_released),
            "grade_changes": len(chunk.grade_changes), "reservations_expired": chunk.reservations_expired,
            "limits_expired": chunk.limits_expired, "overdue_marked": chunk.overdue_marked})

    def check(self, customer: str, order_id: str, amount: str, on: str,
              currency: str = "EUR") -> dict[str, Any]:
        account = self.credit.account(customer) or CreditAccount(customer)
        answer = account.check(order_id, M(amount), currency, D(on), self.credit.rules)
        self.credit.save_tracked(account, tracking=None)
        return answer

    def promise(self, customer: str, made_on: str, promised: str, amount: str) -> dict[str, Any]:
        promise = self.dunning.promise(customer, made_on=D(made_on), promised_date=D(promised),
                                       amount=M(amount), currency=None, invoice_ids=None)
        assert promise is not None
        return promise


def write(book: Book) -> None:
    """The book, in the order of its business dates."""
    gentle = Policy.model_validate({
        "name": "gentle", "description": "two polite notices",
        "levels": [
            {"name": "first_notice", "days_past_due": 14, "channels": ["email"], "template": "first_notice"},
            {"name": "second_notice", "days_past_due": 45, "channels": ["email", "letter"],
             "template": "second_notice", "fee": "2.50"},
        ],
        "promise_grace_days": 5,
    })
    book.dunning.store_policy(gentle)

    # profiles: credit limits, policies, languages, do_not_dun (one also on ar.customers)
    book.profile("C1", country="DE", language="de", credit_limit={"currency": "EUR", "amount": "5000.00"},
                 also_on_customers_topic=True)
    book.profile("C2", country="GB", credit_limit={"currency": "EUR", "amount": "10000.00"})
    book.profile("C3", country="FR", contacts=[{"email": "ap@c3.example", "language": "fr"}])
    book.profile("C4", country="AT", payment_terms_days=30)
    book.profile("C5", country="NL", segment="retail", dunning_policy="gentle", do_not_dun=True)
    book.profile("C6", country="US", credit_limit={"currency": "USD", "amount": "3000.00"})
    book.credit.set_limit("C7", "EUR", M("1500.00"), "carol", None, None)

    # C1: an approved order reserved, its invoice consuming it; terms with an early-payment discount
    answer = book.check("C1", "O-1", "600.00", "2025-01-02")
    assert answer["decision"] == "approve", answer
    book.invoice("C1", "C1-I1", "1000.00", "2025-01-02", "2025-02-01",
                 terms={"net_days": 30, "discount_percent": "2", "discount_days": 10})
    book.invoice("C1", "C1-I2", "500.00", "2025-01-03", "2025-02-02", attributes={"order_id": "O-1"},
                 reference="PO-77")
    book.check("C1", "O-2", "250.00", "2025-01-03")  # approved, never invoiced: expires
    book.check("C1", "O-3", "100.00", "2025-01-03", currency="USD")  # no USD limit: review
    book.pay("C1", "C1-P1", "980.00", "2025-01-10", allocations=[("C1-I1", "980.00")])  # full, discounted
    book.pay("C1", "C1-P2", "200.00", "2025-01-20", allocations=[("C1-I2", "200.00")])  # partial

    # C2: long overdue, adjusted, partly written off; escalated; credit hold by overdue days
    book.invoice("C2", "C2-I1", "2000.00", "2025-01-01", "2025-01-31")
    book.invoice("C2", "C2-I2", "300.00", "2025-01-05", "2025-02-04")
    book.send("invoice.adjusted", "C2", invoice_id="C2-I1", new_amount="2200.00", effective_date="2025-01-06",
              reason="freight added")
    # C3: a credit note on an invoice and one on account; a dispute accepted with a credit
    book.invoice("C3", "C3-I1", "800.00", "2025-01-02", "2025-02-01", currency="EUR")
    book.invoice("C3", "C3-I2", "400.00", "2025-01-03", "2025-02-02")
    book.send("credit_note.issued", "C3", credit_note_id="C3-CN1", currency="EUR", amount="50.00",
              issue_date="2025-01-08", invoice_id="C3-I1", reason="damaged goods")
    # C4: overdue, a promise broken; a dispute rejected; an overpayment
    book.invoice("C4", "C4-I1", "600.00", "2025-01-02", "2025-02-01")
    book.invoice("C4", "C4-I2", "150.00", "2025-01-04", "2025-02-03")
    # C5: do not dun (at first), its own policy
    book.invoice("C5", "C5-I1", "450.00", "2025-01-02", "2025-02-01")
    # C6 (USD): a payment over two invoices, reversed; a payment that paid nothing, reversed
    book.invoice("C6", "C6-I1", "700.00", "2025-01-02", "2025-02-01", currency="USD")
    book.invoice("C6", "C6-I2", "300.00", "2025-01-03", "2025-02-02", currency="USD")
    book.invoice("C6", "C6-I3", "900.00", "2025-01-04", "2025-02-03", currency="USD")
    # C7: over its limit: an automatic hold; a check while on hold
    book.invoice("C7", "C7-I1", "1000.00", "2025-01-05", "2025-02-04")
    book.invoice("C7", "C7-I2", "800.00", "2025-01-06", "2025-02-05")
    answer = book.check("C7", "O-71", "100.00", "2025-01-07")
    assert answer["decision"] == "hold", answer

    book.run("2025-01-29")  # courtesy reminders (3 days before due)
    book.review("2025-01-31")  # grades; no overdue yet
    book.send("dispute.opened", "C3", dispute_id="C3-D1", invoice_id="C3-I2", amount="100.00",
              opened_date="2025-02-03", reason="short delivery")
    book.send("dispute.opened", "C4", dispute_id="C4-D1", invoice_id="C4-I2", amount="150.00",
              opened_date="2025-02-04", reason="not ordered")
    book.pay("C6", "C6-P1", "1000.00", "2025-02-05", currency="USD",
             allocations=[("C6-I1", "700.00"), ("C6-I2", "300.00")])  # several invoices
    book.run("2025-02-08")  # first notices (7 days past due)
    book.promise("C3", "2025-02-09", "2025-02-20", "300.00")  # kept below
    book.promise("C4", "2025-02-09", "2025-02-15", "600.00")  # broken below
    book.send("payment.reversed", "C6", payment_id="C6-P1", effective_date="2025-02-10",
              reason="returned by the bank")  # it had paid two invoices
    book.pay("C3", "C3-P1", "300.00", "2025-02-14")  # unallocated: auto-allocated, keeps the promise
    book.send("dispute.resolved", "C3", dispute_id="C3-D1", invoice_id="C3-I2", outcome="accepted",
              resolved_date="2025-02-16", credited_amount="100.00")
    book.send("dispute.resolved", "C4", dispute_id="C4-D1", invoice_id="C4-I2", outcome="rejected",
              resolved_date="2025-02-17")
    book.run("2025-02-22")  # C4's promise broken (grace 3 days), second notices
    book.send("credit_note.issued", "C3", credit_note_id="C3-CN2", currency="EUR", amount="25.00",
              issue_date="2025-02-23", reason="goodwill")  # on account (C3's invoices may absorb it)
    book.send("invoice.written_off", "C2", invoice_id="C2-I2", amount="300.00", effective_date="2025-02-25",
              reason="uncollectable")
    book.send("invoice.cancelled", "C6", invoice_id="C6-I3", effective_date="2025-02-26",
              reason="issued in error")  # dunned before: level 1
    book.profile("C5", country="NL", segment="retail", dunning_policy="gentle", do_not_dun=False)
    book.credit.place_hold("C3", "carol", "awaiting guarantor")
    book.pay("C4", "C4-P1", "1000.00", "2025-03-01", allocations=[("C4-I1", "600.00")])  # over: unapplied
    book.pay("C6", "C6-P2", "250.00", "2025-03-02", currency="USD")  # paid nothing? no: auto-allocated
    book.run("2025-03-08")
    book.review("2025-03-10")
    holds = book.credit.account("C3").active_holds()  # type: ignore[union-attr]
    book.credit.release_hold("C3", holds[0].hold_id, "dave", "guarantor received")
    book.credit.set_limit("C6", "USD", M("4000.00"), "carol", D("2025-04-30"), D("2025-03-31"))
    book.run("2025-03-22")
    book.review("2025-04-02")  # C2 past 60 days: overdue hold; C7's hold limit + overdue; C6 limit review due
    c7 = book.credit.account("C7")
    assert c7 is not None
    automatic = [h for h in c7.active_holds() if h.kind == "automatic"]
    book.credit.release_hold("C7", automatic[0].hold_id, "dave", "agreed payment plan")  # an override
    book.run("2025-04-02")
    book.pay("C7", "C7-P1", "1800.00", "2025-04-10")  # unallocated: pays both, the override lapses
    book.run("2025-04-15")
    book.review("2025-05-02")  # C6's limit expired, C1's reservation expired long ago
    book.run("2025-05-02")  # C2 escalated (90 days past due)
    book.run("2025-05-20")
    book.pay("C5", "C5-P0", "50.00", "2025-05-25", currency="EUR")
    # a payment that paid nothing (C1 owes nothing in USD), then reversed
    book.pay("C1", "C1-P3", "75.00", "2025-06-01", currency="USD")
    book.send("payment.reversed", "C1", payment_id="C1-P3", effective_date="2025-06-03", reason="chargeback")
    book.profile("C4", country="AT", payment_terms_days=30)  # the same profile again: acknowledged only
    book.review("2025-06-05")


def ledger_figures(book: Book, customer: str) -> dict[str, Any]:
    account = book.ledger.account(customer)
    assert account is not None
    return {
        "totals": {c: {k: str(v) for k, v in account.totals(c).items()}
                   for c in sorted(account.currencies())},
        "invoices": {i.invoice_id: {"currency": i.currency, "amount": str(i.amount),
                                    "open_amount": str(i.open_amount), "status": i.status,
                                    "settled_date": i.settled_date.isoformat() if i.settled_date else None,
                                    "written_off": str(i.written_off),
                                    "discount_taken": str(i.discount_taken),
                                    "disputed_amount": str(i.disputed_amount), "cancelled": i.cancelled}
                     for i in sorted(account.invoices.values(), key=lambda i: i.invoice_id)},
        "credits": {c.key: {"kind": c.kind, "currency": c.currency, "amount": str(c.amount),
                            "remaining": str(c.remaining), "void": c.void}
                    for c in sorted(account.credits.values(), key=lambda c: c.key)},
        "profile": account.profile,
    }


def store_counts(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT topic, COUNT(*) FROM stored_events GROUP BY topic ORDER BY topic").fetchall()
    return {"events": sum(n for _, n in rows), "topics": [[topic, n] for topic, n in rows]}


def main(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    book = Book(directory)
    write(book)
    as_of = D(VIEW_AS_OF)
    expected: dict[str, Any] = {"written_by": "b96bfc3", "view_as_of": VIEW_AS_OF, "customers": {}}
    for customer in CUSTOMERS:
        dunning = book.dunning.account(customer, fresh=True)
        credit = book.credit.account(customer, fresh=True)
        expected["customers"][customer] = {
            "dunning": dunning.view() if dunning else None,
            "credit": credit.view(as_of=as_of, rules=book.credit.rules) if credit else None,
            "ledger": ledger_figures(book, customer),
        }
    for app in (book.ledger, book.dunning, book.credit):
        app.close()
    expected["stores"] = {name: store_counts(directory / f"{name}.sqlite")
                          for name in ("ledger", "dunning", "credit")}
    expected["dead_letters"] = book.dead_letters
    for name in ("ledger", "dunning", "credit"):  # one file each, compact, the WAL folded in
        path, compact = directory / f"{name}.sqlite", directory / f"{name}.compact"
        source = sqlite3.connect(path)
        source.execute("VACUUM INTO ?", (str(compact),))
        source.close()
        target = sqlite3.connect(compact)
        target.execute("PRAGMA journal_mode=DELETE")
        target.close()
        for old in directory.glob(f"{name}.sqlite*"):
            old.unlink()
        compact.rename(path)
    (directory / "ledger_messages.json").write_text(json.dumps(book.messages, indent=1) + "\n")
    (directory / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    summary = {name: expected["stores"][name]["events"] for name in expected["stores"]}
    print(f"wrote {directory}: {summary} events, {len(book.messages)} messages, "
          f"{len(book.dead_letters)} dead-lettered")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
