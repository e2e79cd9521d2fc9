"""Deposits in the credit account (issue 19): a check for an order whose prepayment the ledger
still awaits answers ``review`` with ``deposit_required``, amounts worked out by hand."""

from __future__ import annotations

from itertools import count
from typing import Any

from shared.ledger_feed import read_fact
from tests.unit.ledger_feed_customer import rebuilt_from
from tests.unit.test_credit_account import Customer

_VERSIONS = count(900)  # the ledger's order of the facts (ids ledger:<account>:<version>:<index>)


def prepayment_fact(c: Customer, event_type: str, **data: Any) -> None:
    c.observe(read_fact(event_type, {"customer_id": c.customer_id, **data}, f"ledger:x:{next(_VERSIONS)}:0"))
    c.collect()


def test_an_order_with_a_prepayment_awaited_needs_its_deposit() -> None:
    """Limit 10,000.00. The ledger asks 3,000.00 in advance for order O1: a check of 8,000.00
    for it is ``review``, 3,000.00 deposit required; 1,000.00 comes: 2,000.00 required; the
    rest comes: the same order checked again is approved and reserved. Another order never
    needed a deposit; a withdrawn request needs none."""
    c = Customer()
    c.set_limit("EUR", "10000.00")
    prepayment_fact(c, "ledger.prepayment_requested", request_id="RQ1", currency="EUR", amount="3000.00",
                    order_id="O1", requested_date="2025-03-01", due_date="2025-03-08",
                    effective_date="2025-03-01")
    first = c.check("O1", "8000.00", "2025-03-02")
    assert (first["decision"], first["reasons"], first["deposit_amount"]) == (
        "review", ["deposit_required"], "3000.00")
    assert c.check("O2", "1000.00", "2025-03-02")["decision"] == "approve"
    prepayment_fact(c, "ledger.prepayment_received", request_id="RQ1", payment_id="P1", currency="EUR",
                    amount="1000.00", effective_date="2025-03-03")
    prepayment_fact(c, "ledger.prepayment_received", request_id="RQ1", payment_id="P1", currency="EUR",
                    amount="1000.00", effective_date="2025-03-03")  # again: counted once
    again = c.check("O1", "8000.00", "2025-03-03")
    assert (again["decision"], again["deposit_amount"]) == ("review", "2000.00")
    prepayment_fact(c, "ledger.prepayment_received", request_id="RQ1", payment_id="P2", currency="EUR",
                    amount="2000.00", effective_date="2025-03-04")
    paid = c.check("O1", "8000.00", "2025-03-04")
    # 1,000.00 reserved for O2 + 8,000.00: within the limit
    assert (paid["decision"], paid["reasons"], paid["deposit_amount"], paid["reserved_until"]) == (
        "approve", [], None, "2025-04-03")
    assert c.check("O1", "8000.00", "2025-03-05") == paid  # final now
    prepayment_fact(c, "ledger.prepayment_requested", request_id="RQ2", currency="EUR", amount="50.00",
                    order_id="O3", requested_date="2025-03-01", due_date="2025-03-08")
    prepayment_fact(c, "ledger.prepayment_cancelled", request_id="RQ2", currency="EUR",
                    effective_date="2025-03-02", reason="paid on delivery", released=[], applied=[],
                    invoices=[])
    withdrawn = c.check("O3", "10.00", "2025-03-05")  # 9,010.00 exposed: within the limit
    assert (withdrawn["decision"], withdrawn["reasons"], withdrawn["deposit_amount"]) == ("approve", [], None)
    assert rebuilt_from(c.history).deposits == c.credit.deposits


def test_a_deposit_paid_then_reversed_or_refunded_is_awaited_again() -> None:
    """RQ1 asks 300.00 for O1; P1 pays it; P1 bounces: 300.00 awaited again. P2 pays it; 120.00
    of P2 is refunded: 120.00 awaited; the same refund again changes nothing."""
    c = Customer()
    c.set_limit("EUR", "10000.00")
    prepayment_fact(c, "ledger.prepayment_requested", request_id="RQ1", currency="EUR", amount="300.00",
                    order_id="O1", requested_date="2025-03-01", due_date="2025-03-08")
    prepayment_fact(c, "ledger.prepayment_received", request_id="RQ1", payment_id="P1", currency="EUR",
                    amount="300.00")
    assert c.credit.deposit_awaited("O1", "EUR") == 0
    prepayment_fact(c, "ledger.invoice_changed", change="payment_reversed", payment_id="P1",
                    effective_date="2025-03-05", reason="bounced", released=[], applied=[], invoices=[])
    assert str(c.credit.deposit_awaited("O1", "EUR")) == "300.00"
    prepayment_fact(c, "ledger.prepayment_received", request_id="RQ1", payment_id="P2", currency="EUR",
                    amount="300.00")
    refund = {"refund_id": "R1", "currency": "EUR", "amount": "120.00", "effective_date": "2025-03-07",
              "payment_id": "P2", "taken": [{"credit": "payment:P2", "amount": "120.00"}]}
    prepayment_fact(c, "ledger.refund_issued", **refund)
    prepayment_fact(c, "ledger.refund_issued", **refund)  # again
    assert str(c.credit.deposit_awaited("O1", "EUR")) == "120.00"
    check = c.check("O1", "500.00", "2025-03-08")
    assert (check["decision"], check["deposit_amount"]) == ("review", "120.00")
    assert rebuilt_from(c.history).deposits == c.credit.deposits
