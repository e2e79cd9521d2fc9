"""The ledger's rules, one by one, with amounts worked out by hand."""

from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from services.ledger.domain import CustomerAccount, LedgerError
from shared.erp_events import parse_envelope, validate_event

_ids = count()


def send(account: CustomerAccount, kind: str, **data: Any) -> bool:
    envelope = {"specversion": "1.0", "id": f"m{next(_ids)}", "source": "erp", "type": kind,
                "data": {"customer_id": account.customer_id, **data}}
    return account.handle(validate_event(parse_envelope(envelope)))


def invoice(account: CustomerAccount, invoice_id: str, amount: str, issue: str = "2026-01-01",
            due: str = "2026-01-31", currency: str = "EUR", **extra: Any) -> None:
    send(account, "invoice.issued", invoice_id=invoice_id, issue_date=issue, due_date=due,
         currency=currency, amount=amount, **extra)


def pay(account: CustomerAccount, payment_id: str, amount: str, day: str = "2026-01-10",
        currency: str = "EUR", **extra: Any) -> None:
    send(account, "payment.received", payment_id=payment_id, currency=currency, amount=amount,
         received_date=day, **extra)


def open_amounts(account: CustomerAccount) -> dict[str, Decimal]:
    return {i: inv.open_amount for i, inv in account.invoices.items()}


def D(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture
def account() -> CustomerAccount:
    return CustomerAccount(customer_id="C1")


def test_payment_goes_oldest_due_first_and_the_rest_is_unapplied(account: CustomerAccount) -> None:
    # A due Jan 31 (100), B due Jan 15 (50); pay 120 → B 50 first, then 70 of A; A open 30.
    invoice(account, "A", "100.00", due="2026-01-31")
    invoice(account, "B", "50.00", due="2026-01-15")
    pay(account, "P1", "120.00")
    assert open_amounts(account) == {"A": D("30.00"), "B": D("0.00")}
    # pay 45 → A settled, 15 unapplied
    pay(account, "P2", "45.00", day="2026-01-20")
    assert open_amounts(account) == {"A": D("0.00"), "B": D("0.00")}
    assert account.totals("EUR")["unapplied"] == D("15.00")
    assert account.invoices["A"].status == "paid"
    assert account.invoices["A"].settled_date.isoformat() == "2026-01-20"


def test_unapplied_cash_pays_a_later_invoice(account: CustomerAccount) -> None:
    # prepayment 80, then invoice 100 → open 20, unapplied 0
    pay(account, "P1", "80.00", day="2026-01-02")
    invoice(account, "A", "100.00", issue="2026-01-05")
    assert open_amounts(account) == {"A": D("20.00")}
    assert account.totals("EUR")["unapplied"] == D("0.00")


def test_explicit_allocation_wins_over_oldest_due(account: CustomerAccount) -> None:
    # old A 100, new B 100; pay 100 allocating 60 to B → B 40; the other 40 goes to A → 60
    invoice(account, "A", "100.00", due="2026-01-15")
    invoice(account, "B", "100.00", due="2026-02-15")
    pay(account, "P1", "100.00", allocations=[{"invoice_id": "B", "amount": "60.00"}])
    assert open_amounts(account) == {"A": D("60.00"), "B": D("40.00")}


def test_allocation_to_an_invoice_not_yet_arrived_waits_for_it(account: CustomerAccount) -> None:
    # A 100 open; payment 30 allocated to X (unknown) stays reserved, A untouched
    invoice(account, "A", "100.00")
    pay(account, "P1", "30.00", allocations=[{"invoice_id": "X", "amount": "30.00"}])
    assert open_amounts(account) == {"A": D("100.00")}
    assert account.totals("EUR")["unapplied"] == D("30.00")
    invoice(account, "X", "50.00", issue="2026-01-12")
    assert open_amounts(account)["X"] == D("20.00")
    assert account.totals("EUR")["unapplied"] == D("0.00")


def test_cash_discount_two_ten_net_thirty(account: CustomerAccount) -> None:
    # 1000 2/10: pay 500 on day 2 (no discount yet), 480 on day 5 → settled, discount 20
    invoice(account, "A", "1000.00", terms={"discount_percent": "2", "discount_days": 10})
    pay(account, "P1", "500.00", day="2026-01-03")
    assert open_amounts(account) == {"A": D("500.00")}
    pay(account, "P2", "480.00", day="2026-01-06")
    assert account.invoices["A"].open_amount == D("0.00")
    assert account.invoices["A"].discount_taken == D("20.00")
    assert account.totals("EUR")["discounts"] == D("20.00")


def test_discount_missed_after_the_deadline(account: CustomerAccount) -> None:
    # 1000 2/10 paid 980 on day 15 → 20 stays open
    invoice(account, "A", "1000.00", terms={"discount_percent": "2", "discount_days": 10})
    pay(account, "P1", "980.00", day="2026-01-16")
    assert open_amounts(account) == {"A": D("20.00")}


def test_full_payment_in_the_discount_window_earns_no_discount(account: CustomerAccount) -> None:
    invoice(account, "A", "1000.00", terms={"discount_percent": "2", "discount_days": 10})
    pay(account, "P1", "1000.00", day="2026-01-03")
    assert account.invoices["A"].discount_taken == 0
    assert account.totals("EUR")["unapplied"] == 0


def test_reversal_reopens_and_unapplied_cash_refills(account: CustomerAccount) -> None:
    # A 100 paid by P1 100; P2 40 unapplied; reverse P1 → A 100 - 40 = 60, unapplied 0
    invoice(account, "A", "100.00")
    pay(account, "P1", "100.00")
    pay(account, "P2", "40.00", day="2026-01-12")
    send(account, "payment.reversed", payment_id="P1", effective_date="2026-01-20", reason="bounced")
    assert open_amounts(account) == {"A": D("60.00")}
    assert account.invoices["A"].settled_date is None
    assert account.totals("EUR")["received"] == D("40.00")


def test_adjust_below_paid_releases_to_unapplied_and_cancel_releases_all(account: CustomerAccount) -> None:
    # A 100 paid 70; adjust to 50 → settled, 20 released; B 100 arrives → takes 20 → 80
    invoice(account, "A", "100.00")
    pay(account, "P1", "70.00")
    send(account, "invoice.adjusted", invoice_id="A", new_amount="50.00", effective_date="2026-01-15",
         reason="price")
    assert open_amounts(account) == {"A": D("0.00")}
    assert account.totals("EUR")["unapplied"] == D("20.00")
    invoice(account, "B", "100.00", issue="2026-01-16")
    assert open_amounts(account)["B"] == D("80.00")
    # cancel A → its 50 comes back and pays B: 80 - 50 = 30
    send(account, "invoice.cancelled", invoice_id="A", effective_date="2026-01-20", reason="error")
    assert account.invoices["A"].status == "cancelled"
    assert open_amounts(account)["B"] == D("30.00")


def test_write_off_and_its_limit(account: CustomerAccount) -> None:
    invoice(account, "A", "100.00")
    pay(account, "P1", "60.00")
    with pytest.raises(LedgerError, match="exceeds the open amount"):
        send(account, "invoice.written_off", invoice_id="A", amount="50.00",
             effective_date="2026-02-01", reason="bad debt")
    send(account, "invoice.written_off", invoice_id="A", amount="40.00", effective_date="2026-02-01",
         reason="bad debt")
    assert account.invoices["A"].status == "written_off"


def test_credit_notes_applied_and_on_account(account: CustomerAccount) -> None:
    # A 100, B 100 (older due). CN1 30 on A → A 70; CN2 20 on account → oldest due (B) → 80
    invoice(account, "A", "100.00", due="2026-02-28")
    invoice(account, "B", "100.00", due="2026-01-20")
    send(account, "credit_note.issued", credit_note_id="CN1", currency="EUR", amount="30.00",
         issue_date="2026-01-05", invoice_id="A")
    send(account, "credit_note.issued", credit_note_id="CN2", currency="EUR", amount="20.00",
         issue_date="2026-01-05")
    assert open_amounts(account) == {"A": D("70.00"), "B": D("80.00")}
    assert account.totals("EUR")["credited"] == D("50.00")


def test_currency_mismatch_is_refused(account: CustomerAccount) -> None:
    invoice(account, "A", "100.00", currency="EUR")
    with pytest.raises(LedgerError, match="USD"):
        pay(account, "P1", "10.00", currency="USD", allocations=[{"invoice_id": "A", "amount": "10.00"}])
    # a USD payment without allocation stays USD unapplied cash; EUR invoice untouched
    pay(account, "P2", "10.00", currency="USD")
    assert open_amounts(account) == {"A": D("100.00")}
    assert account.totals("USD")["unapplied"] == D("10.00")


def test_disputes_are_shown_apart_and_credited_when_accepted(account: CustomerAccount) -> None:
    # dispute before the invoice waits; A 100 disputed 30; accepted with 25 credited → open 75
    send(account, "dispute.opened", dispute_id="D1", invoice_id="A", amount="30.00",
         opened_date="2026-01-03", reason="damaged")
    invoice(account, "A", "100.00")
    assert account.invoices["A"].disputed_amount == D("30.00")
    assert account.totals("EUR")["open"] == D("100.00")  # disputed stays in the balance
    send(account, "dispute.resolved", dispute_id="D1", invoice_id="A", resolved_date="2026-01-20",
         outcome="accepted", credited_amount="25.00")
    assert account.invoices["A"].disputed_amount == 0
    assert open_amounts(account) == {"A": D("75.00")}


def test_duplicates_have_no_effect_and_conflicts_are_refused(account: CustomerAccount) -> None:
    envelope = {"specversion": "1.0", "id": "same", "source": "erp", "type": "payment.received",
                "data": {"customer_id": "C1", "payment_id": "P1", "currency": "EUR", "amount": "10.00",
                         "received_date": "2026-01-02"}}
    assert account.handle(validate_event(parse_envelope(envelope))) is True
    assert account.handle(validate_event(parse_envelope(envelope))) is False
    assert account.totals("EUR")["unapplied"] == D("10.00")
    with pytest.raises(LedgerError, match="different content"):
        pay(account, "P1", "11.00", day="2026-01-02")


def test_money_invariant_after_a_mixed_history(account: CustomerAccount) -> None:
    invoice(account, "A", "100.00", terms={"discount_percent": "2", "discount_days": 10})
    invoice(account, "B", "250.00", due="2026-02-15")
    pay(account, "P1", "98.00", day="2026-01-05")
    pay(account, "P2", "300.00", day="2026-01-09")
    send(account, "payment.reversed", payment_id="P2", effective_date="2026-01-11", reason="bounced")
    t = account.totals("EUR")
    assert t["invoiced"] - t["credited"] - t["written_off"] - t["discounts"] - t["received"] == (
        t["open"] - t["unapplied"]
    )


def refund(account: CustomerAccount, refund_id: str, amount: str, day: str = "2026-02-01",
           **extra: Any) -> bool:
    return send(account, "payment.refunded", refund_id=refund_id, currency="EUR", amount=amount,
                refund_date=day, **extra)


def test_a_refund_takes_the_oldest_unapplied_cash_first_or_the_payment_named(
    account: CustomerAccount,
) -> None:
    # P1 50 (Jan 10) and P2 80 (Jan 12) on account: 130 unapplied
    pay(account, "P1", "50.00")
    pay(account, "P2", "80.00", day="2026-01-12")
    refund(account, "R1", "60.00")  # P1's 50, then 10 of P2
    assert {k: c.remaining for k, c in account.credits.items()} == {
        "payment:P1": D("0.00"), "payment:P2": D("70.00")}
    refund(account, "R2", "30.00", payment_id="P2")
    assert account.credits["payment:P2"].remaining == D("40.00")
    t = account.totals("EUR")
    # the invariant, refunds netted out of what was received: 0 - 0 - 0 - 0 - (130 - 90) = 0 - 40
    assert (t["received"], t["unapplied"]) == (D("40.00"), D("40.00"))
    assert refund(account, "R2", "30.00", payment_id="P2") is True  # the same refund again: nothing
    assert account.credits["payment:P2"].remaining == D("40.00")


def test_a_refund_beyond_the_unapplied_cash_is_refused_and_changes_nothing(account: CustomerAccount) -> None:
    # A 100 paid by P1 120: 20 unapplied; P2 30 allocated to X (not arrived): reserved, not refundable
    invoice(account, "A", "100.00")
    pay(account, "P1", "120.00")
    pay(account, "P2", "30.00", allocations=[{"invoice_id": "X", "amount": "30.00"}])
    with pytest.raises(LedgerError, match=r"amount: refund R1 of 25.00 EUR is more than customer C1's "
                                          r"unapplied cash \(20.00 EUR\)"):
        refund(account, "R1", "25.00")
    with pytest.raises(LedgerError, match="payment P9 is not known"):
        refund(account, "R2", "5.00", payment_id="P9")
    with pytest.raises(LedgerError, match="more than payment P1's unapplied cash"):
        refund(account, "R3", "21.00", payment_id="P1")
    assert account.totals("EUR")["unapplied"] == D("50.00")
    assert refund(account, "R4", "20.00", payment_id="P1")
    with pytest.raises(LedgerError, match="already exists with different content"):
        refund(account, "R4", "10.00", payment_id="P1")


def request(account: CustomerAccount, request_id: str, amount: str, order_id: str | None = None,
            day: str = "2026-01-02") -> None:
    send(account, "prepayment.requested", request_id=request_id, currency="EUR", amount=amount,
         requested_date=day, due_date="2026-01-09", **({"order_id": order_id} if order_id else {}))


def test_a_prepayment_waits_for_its_orders_invoice_and_the_rest_is_ordinary_cash(
    account: CustomerAccount,
) -> None:
    # A 200 (no order) open; RQ1 for order O1; P1 150 tagged: held, A untouched
    invoice(account, "A", "200.00", due="2026-01-20")
    request(account, "RQ1", "150.00", order_id="O1")
    assert account.totals("EUR")["open"] == D("200.00")  # a request is no receivable
    pay(account, "P1", "150.00", prepayment_request_id="RQ1")
    assert open_amounts(account) == {"A": D("200.00")}
    assert account.totals("EUR")["unapplied"] == D("150.00")
    # B 100 for order O1 (due after A): P1 pays it first; the 50 left is ordinary: A 150
    invoice(account, "B", "100.00", issue="2026-01-12", due="2026-02-11", attributes={"order_id": "O1"})
    assert open_amounts(account) == {"A": D("150.00"), "B": D("0.00")}
    assert account.totals("EUR")["unapplied"] == D("0.00")
    assert account.credits["payment:P1"].held_for is None


def test_cash_for_a_request_not_known_yet_waits_and_an_allocation_to_its_id_tags_it(
    account: CustomerAccount,
) -> None:
    invoice(account, "A", "100.00")
    pay(account, "P1", "60.00", prepayment_request_id="RQ9")  # its request comes later
    pay(account, "P2", "40.00", allocations=[{"invoice_id": "RQ8", "amount": "40.00"}])  # reserved for "RQ8"
    assert open_amounts(account) == {"A": D("100.00")}
    request(account, "RQ9", "60.00", order_id="O9")
    request(account, "RQ8", "40.00", order_id="O9")  # the reservation becomes its tag
    assert (account.credits["payment:P2"].held_for, account.credits["payment:P2"].earmarks) == ("RQ8", {})
    assert open_amounts(account) == {"A": D("100.00")}
    # the order's invoice: both pay it, oldest cash first (P1 60, then 20 of P2); P2's 20 left pays A
    invoice(account, "C", "80.00", issue="2026-01-15", due="2026-02-14", attributes={"order_id": "O9"})
    assert open_amounts(account) == {"A": D("80.00"), "C": D("0.00")}


def test_a_request_whose_orders_invoice_is_open_takes_the_cash_at_once(account: CustomerAccount) -> None:
    invoice(account, "A", "100.00", due="2026-01-15")
    invoice(account, "B", "100.00", due="2026-02-15", attributes={"order_id": "O1"})
    pay(account, "P1", "30.00", day="2026-01-05", allocations=[{"invoice_id": "RQ1", "amount": "30.00"}])
    assert open_amounts(account) == {"A": D("100.00"), "B": D("100.00")}  # reserved for "RQ1"
    request(account, "RQ1", "30.00", order_id="O1", day="2026-01-06")
    assert open_amounts(account) == {"A": D("100.00"), "B": D("70.00")}


def test_a_withdrawn_request_frees_its_cash_and_held_cash_may_be_refunded(account: CustomerAccount) -> None:
    invoice(account, "A", "100.00")
    request(account, "RQ1", "50.00", order_id="O1")
    pay(account, "P1", "50.00", prepayment_request_id="RQ1")
    request(account, "RQ2", "40.00", order_id="O2")
    pay(account, "P2", "40.00", day="2026-01-11", prepayment_request_id="RQ2")
    assert refund(account, "R1", "10.00", payment_id="P2")  # a deposit paid back in part
    assert account.credits["payment:P2"].remaining == D("30.00")
    send(account, "prepayment.cancelled", request_id="RQ1", effective_date="2026-01-20",
         reason="order dropped")
    assert open_amounts(account) == {"A": D("50.00")}  # P1 is ordinary cash now: oldest due first
    assert account.credits["payment:P2"].held_for == "RQ2"  # still held
    with pytest.raises(LedgerError, match="prepayment request RQ7 is not known"):
        send(account, "prepayment.cancelled", request_id="RQ7", effective_date="2026-01-20", reason="?")
    with pytest.raises(LedgerError, match="already exists with different content"):
        request(account, "RQ2", "41.00", order_id="O2")
    t = account.totals("EUR")
    assert t["invoiced"] - t["received"] == t["open"] - t["unapplied"]  # 100 - 80 = 50 - 30


def test_a_dispute_before_its_invoice_has_at_most_the_digits_a_currency_has(account: CustomerAccount) -> None:
    """Its currency is not known yet: 1E-10 is refused (no read model could store it), 0.0001
    waits for the invoice."""
    with pytest.raises(LedgerError, match="amount: 1E-10 has more decimal digits than any currency"):
        send(account, "dispute.opened", dispute_id="D9", invoice_id="LATER", amount="1E-10",
             opened_date="2026-01-01", reason="r")
    send(account, "dispute.opened", dispute_id="D9", invoice_id="LATER", amount="0.0001",
         opened_date="2026-01-01", reason="r")
    assert account.disputes["D9"].amount == D("0.0001")
