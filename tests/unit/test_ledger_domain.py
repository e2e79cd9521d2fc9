"""Unit tests of the ledger domain (one customer's account) and of the inbound schemas.

Every scenario states its amounts worked out by hand. Each message goes through
``CustomerAccount.handle`` exactly as the consumer sends it, and after every message the
``Book`` helper checks the money invariant per currency (DESIGN.md invariant 2) and that
the ``touched`` outcomes the new events carry equal the resulting invoice state.
"""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.ledger.domain import CustomerAccount, LedgerError
from services.ledger.domain.book import Invoice
from services.ledger.domain.errors import (
    AmountExceedsOpen,
    ConflictingDuplicate,
    CurrencyMismatch,
    InvoiceClosed,
    UnknownDispute,
    UnknownInvoice,
    UnknownPayment,
)
from shared.erp_events import (
    InboundMessage,
    InvalidMessage,
    decode_message,
    parse_envelope,
    validate_event,
)

M = Decimal
CUSTOMER = "CUST-1"
SOURCE = "erp/eu-1"
TWO_TEN = {"net_days": 30, "discount_percent": "2", "discount_days": 10}  # 2/10 net 30
_ids = itertools.count(1)


# --------------------------------------------------------------------------- messages


def message(kind: str, *, message_id: str | None = None, source: str = SOURCE,
            **data: Any) -> InboundMessage:
    """A validated inbound message, built the way the consumer builds it."""
    envelope = {
        "specversion": "1.0", "id": message_id or f"msg-{next(_ids)}", "source": source,
        "type": kind, "subject": CUSTOMER, "data": {"customer_id": CUSTOMER, **data},
    }
    return validate_event(parse_envelope(envelope))


def invoice(invoice_id: str, amount: str, issue: str = "2024-01-01", due: str = "2024-01-31", *,
            currency: str = "EUR", terms: dict[str, Any] | None = None, **kw: Any) -> InboundMessage:
    data: dict[str, Any] = {"invoice_id": invoice_id, "amount": amount, "issue_date": issue,
                            "due_date": due, "currency": currency}
    if terms is not None:
        data["terms"] = terms
    return message("invoice.issued", **data, **kw)


def payment(payment_id: str, amount: str, received: str, *, currency: str = "EUR",
            allocations: dict[str, str] | None = None, **kw: Any) -> InboundMessage:
    data: dict[str, Any] = {"payment_id": payment_id, "amount": amount, "received_date": received,
                            "currency": currency}
    if allocations:
        data["allocations"] = [{"invoice_id": i, "amount": a} for i, a in allocations.items()]
    return message("payment.received", **data, **kw)


def credit_note(note_id: str, amount: str, issued: str, invoice_id: str | None = None, *,
                currency: str = "EUR") -> InboundMessage:
    data: dict[str, Any] = {"credit_note_id": note_id, "amount": amount, "issue_date": issued,
                            "currency": currency}
    if invoice_id is not None:
        data["invoice_id"] = invoice_id
    return message("credit_note.issued", **data)


def adjust(invoice_id: str, new_amount: str, on: str, **kw: Any) -> InboundMessage:
    return message("invoice.adjusted", invoice_id=invoice_id, new_amount=new_amount,
                   effective_date=on, reason="price correction", **kw)


def cancel(invoice_id: str, on: str) -> InboundMessage:
    return message("invoice.cancelled", invoice_id=invoice_id, effective_date=on, reason="issued in error")


def write_off(invoice_id: str, amount: str, on: str) -> InboundMessage:
    return message("invoice.written_off", invoice_id=invoice_id, amount=amount, effective_date=on,
                   reason="uncollectable")


def reverse(payment_id: str, on: str) -> InboundMessage:
    return message("payment.reversed", payment_id=payment_id, effective_date=on, reason="bounced")


def dispute(dispute_id: str, invoice_id: str, amount: str, on: str) -> InboundMessage:
    return message("dispute.opened", dispute_id=dispute_id, invoice_id=invoice_id, amount=amount,
                   opened_date=on, reason="damaged goods")


def resolve(dispute_id: str, invoice_id: str, outcome: str, on: str,
            credited: str | None = None) -> InboundMessage:
    data: dict[str, Any] = {"dispute_id": dispute_id, "invoice_id": invoice_id, "outcome": outcome,
                            "resolved_date": on}
    if credited is not None:
        data["credited_amount"] = credited
    return message("dispute.resolved", **data)


def upsert(name: str, **kw: Any) -> InboundMessage:
    return message("customer.upserted", name=name, **kw)


# --------------------------------------------------------------------------- the book


def check_money_adds_up(account: CustomerAccount) -> None:
    """invoiced - credited - written off - discounts - received = open - unapplied."""
    for currency in account.currencies():
        t = account.totals(currency)
        assert (t["invoiced"] - t["credited"] - t["written_off"] - t["discounts"] - t["received"]
                == t["open"] - t["unapplied"]), (currency, t)
        assert t["open"] >= 0 and t["unapplied"] >= 0
        free = sum((c.free for c in account.credits.values()
                    if c.currency == currency and not c.void), M(0))
        still_open = [i.invoice_id for i in account.invoices.values()
                      if i.currency == currency and not i.cancelled and i.open_amount > 0]
        assert not (free > 0 and still_open), f"free {currency} credit {free} next to {still_open}"


def check_touched(account: CustomerAccount, events: list[Any]) -> None:
    """The outcome an event reports for each invoice it touched is the resulting state."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        latest.update(getattr(event, "touched", None) or {})
    for invoice_id, outcome in latest.items():
        state = account.invoices[invoice_id]
        settled = state.settled_date.isoformat() if state.settled_date else None
        assert (M(outcome["open_amount"]), outcome["status"], outcome["settled_date"],
                outcome["currency"]) == (state.open_amount, state.status, settled, state.currency)


class Book:
    """One customer's account, fed messages as the consumer feeds them, checked after each."""

    def __init__(self) -> None:
        self.account = CustomerAccount(customer_id=CUSTOMER)
        self.history: list[Any] = list(self.account.collect_events())
        self.last: list[Any] = []

    def send(self, *messages: InboundMessage) -> bool:
        applied = True
        for item in messages:
            applied = self.account.handle(item)
            self.last = self.account.collect_events()
            self.history.extend(self.last)
            check_touched(self.account, self.last)
            check_money_adds_up(self.account)
        return applied

    def refuses(self, item: InboundMessage, error: type[LedgerError] = LedgerError) -> LedgerError:
        with pytest.raises(error) as caught:
            self.account.handle(item)
        assert self.account.collect_events() == []  # a refused message changes nothing
        return caught.value

    def __getitem__(self, invoice_id: str) -> Invoice:
        return self.account.invoices[invoice_id]

    def open(self, invoice_id: str) -> Decimal:
        return self.account.invoices[invoice_id].open_amount

    def unapplied(self, currency: str = "EUR") -> Decimal:
        return self.account.totals(currency)["unapplied"]

    def totals(self, currency: str = "EUR") -> dict[str, Decimal]:
        return self.account.totals(currency)

    def event_types(self) -> list[str]:
        return [type(e).__name__ for e in self.last]


@pytest.fixture
def book() -> Book:
    return Book()


def days_late(inv: Invoice) -> int:
    assert inv.settled_date is not None
    return max(0, (inv.settled_date - inv.due_date).days)


def days_to_settle(inv: Invoice) -> int:
    assert inv.settled_date is not None
    return (inv.settled_date - inv.issue_date).days


# --------------------------------------------------------------------------- invoices


def test_an_issued_invoice_is_open_for_its_full_amount(book: Book) -> None:
    # 1000.00 issued Jan 1, due Jan 31: open 1000, status open, not settled.
    assert book.send(invoice("I1", "1000.00"))
    assert book.event_types() == ["InvoiceIssued"]
    inv = book["I1"]
    assert (inv.open_amount, inv.status, inv.settled_date, inv.disputed_amount) == (
        M("1000"), "open", None, 0)
    assert book.totals()["invoiced"] == M("1000")
    assert book.totals()["open"] == M("1000")


def test_the_same_invoice_again_under_another_message_id_changes_nothing(book: Book) -> None:
    book.send(invoice("I1", "1000.00"))
    assert book.send(invoice("I1", "1000.00"))  # accepted: the ERP sent it twice
    assert book.event_types() == ["MessageAcknowledged"]
    assert book.totals()["invoiced"] == M("1000")


def test_the_same_invoice_id_with_different_content_is_refused(book: Book) -> None:
    book.send(invoice("I1", "1000.00"))
    error = book.refuses(invoice("I1", "1200.00"), ConflictingDuplicate)
    assert "I1" in str(error)
    assert book["I1"].amount == M("1000")


# --------------------------------------------------------------------------- duplicates


def test_the_same_message_twice_is_a_duplicate_without_events(book: Book) -> None:
    first = invoice("I1", "1000.00")
    assert book.send(first) is True
    assert book.send(first) is False
    assert book.last == []


def test_a_message_id_is_unique_per_source_only(book: Book) -> None:
    # the same id from two sources is two messages: 1000 paid 300 + 200 → open 500
    book.send(invoice("I1", "1000.00"))
    assert book.send(payment("P1", "300.00", "2024-01-05", message_id="same", source="erp/eu-1"))
    assert book.send(payment("P2", "200.00", "2024-01-06", message_id="same", source="erp/us-1"))
    assert book.open("I1") == M("500")


def test_a_message_that_changed_nothing_is_still_a_duplicate_when_it_comes_back_late(book: Book) -> None:
    # adjust to 1000 (no change), then to 800; the first adjustment redelivered must not
    # take the invoice back to 1000.
    book.send(invoice("I1", "1000.00"))
    same = adjust("I1", "1000.00", "2024-01-02")
    assert book.send(same) is True
    book.send(adjust("I1", "800.00", "2024-01-03"))
    assert book.send(same) is False
    assert book["I1"].amount == M("800")


def test_a_payment_id_again_with_different_content_is_refused(book: Book) -> None:
    book.send(payment("P1", "100.00", "2024-01-05"))
    book.refuses(payment("P1", "150.00", "2024-01-05"), ConflictingDuplicate)
    assert book.send(payment("P1", "100.00", "2024-01-05"))  # same content, new message id
    assert book.event_types() == ["MessageAcknowledged"]
    assert book.unapplied() == M("100")


# --------------------------------------------------------------------------- adjustments


def test_adjusting_up_raises_the_open_amount(book: Book) -> None:
    # 1000 paid 600 → open 400; adjusted to 1200 → open 600, partially paid.
    book.send(invoice("I1", "1000.00"), payment("P1", "600.00", "2024-01-05"))
    book.send(adjust("I1", "1200.00", "2024-01-06"))
    assert (book.open("I1"), book["I1"].status, book["I1"].amount) == (M("600"), "partially_paid", M("1200"))


def test_adjusting_a_paid_invoice_up_reopens_it(book: Book) -> None:
    # 1000 paid in full Jan 5 (settled); adjusted to 1100 → open 100, no longer settled.
    book.send(invoice("I1", "1000.00"), payment("P1", "1000.00", "2024-01-05"))
    assert book["I1"].settled_date == date(2024, 1, 5)
    book.send(adjust("I1", "1100.00", "2024-01-10"))
    assert (book.open("I1"), book["I1"].status, book["I1"].settled_date) == (M("100"), "partially_paid", None)


def test_adjusting_up_takes_unapplied_cash(book: Book) -> None:
    # 1000 paid 1300 → 300 unapplied; adjusted to 1200 → the 200 is taken from it: open 0, unapplied 100.
    book.send(invoice("I1", "1000.00"), payment("P1", "1300.00", "2024-01-05"))
    book.send(adjust("I1", "1200.00", "2024-01-10"))
    assert (book.open("I1"), book.unapplied()) == (M("0"), M("100"))
    # the +200 and the 200 applied are both dated Jan 10: as of any date from Jan 5 on it is zero
    assert book["I1"].settled_date == date(2024, 1, 5)


def test_adjusting_down_above_what_is_paid_lowers_the_open_amount(book: Book) -> None:
    # 1000 paid 600 → open 400; adjusted to 800 → open 200.
    book.send(invoice("I1", "1000.00"), payment("P1", "600.00", "2024-01-05"))
    book.send(adjust("I1", "800.00", "2024-01-06"))
    assert (book.open("I1"), book.unapplied()) == (M("200"), M("0"))


def test_adjusting_down_below_what_is_paid_releases_the_overpayment(book: Book) -> None:
    # 1000 paid 1000 Jan 5; adjusted to 700 Jan 10 → 300 of P1 released to unapplied;
    # still paid, and it has been paid since Jan 5 (the Jan 10 changes net to zero).
    book.send(invoice("I1", "1000.00"), payment("P1", "1000.00", "2024-01-05"))
    book.send(adjust("I1", "700.00", "2024-01-10"))
    assert (book.open("I1"), book["I1"].status, book.unapplied()) == (M("0"), "paid", M("300"))
    assert book["I1"].settled_date == date(2024, 1, 5)
    (event,) = book.last
    assert [(r["credit"], r["amount"], r["date"]) for r in event.releases] == [
        ("payment:P1", "300.00", "2024-01-10")]


def test_adjusting_down_releases_the_latest_applications_first_and_reallocates_them(book: Book) -> None:
    # I1 1000 paid by P1 600 (Jan 2) then P2 400 (Jan 3). I2 500 arrives: open 500.
    # I1 adjusted to 700: 300 released from P2 (the latest), which goes to I2 → I2 open 200.
    book.send(invoice("I1", "1000.00", due="2024-01-31"),
              payment("P1", "600.00", "2024-01-02"), payment("P2", "400.00", "2024-01-03"),
              invoice("I2", "500.00", "2024-01-04", "2024-02-04"))
    book.send(adjust("I1", "700.00", "2024-01-06"))
    assert book["I1"].applied == {"payment:P1": M("600"), "payment:P2": M("100")}
    assert book["I2"].applied == {"payment:P2": M("300")}
    assert (book.open("I1"), book.open("I2"), book.unapplied()) == (M("0"), M("200"), M("0"))


def test_adjusting_below_write_offs_and_discounts_is_refused(book: Book) -> None:
    # 1000, 300 written off, 700 paid: an amount below 300 cannot be reached by releasing cash.
    book.send(invoice("I1", "1000.00"), write_off("I1", "300.00", "2024-01-03"),
              payment("P1", "700.00", "2024-01-05"))
    book.refuses(adjust("I1", "200.00", "2024-01-06"))
    book.send(adjust("I1", "300.00", "2024-01-06"))  # exactly the write-off: all 700 released
    assert (book.open("I1"), book.unapplied()) == (M("0"), M("700"))


def test_adjusting_unknown_or_cancelled_invoices_is_refused(book: Book) -> None:
    book.refuses(adjust("I9", "10.00", "2024-01-02"), UnknownInvoice)
    book.send(invoice("I1", "1000.00"), cancel("I1", "2024-01-02"))
    book.refuses(adjust("I1", "10.00", "2024-01-03"), InvoiceClosed)


def test_a_refused_message_sent_again_once_its_cause_is_gone_is_applied(book: Book) -> None:
    # a dead letter re-driven after its invoice arrived: not a duplicate of the refusal
    early = adjust("I1", "800.00", "2024-01-05")
    book.refuses(early, UnknownInvoice)
    book.send(invoice("I1", "1000.00"))
    assert book.send(early)
    assert book.open("I1") == Decimal("800.00")
    assert not book.send(early), "and from then on it is a duplicate"


def test_an_adjustment_with_more_decimals_than_the_currency_is_refused(book: Book) -> None:
    book.send(invoice("I1", "1000", currency="JPY"))
    error = book.refuses(adjust("I1", "999.5", "2024-01-02"))
    assert "new_amount" in str(error)


# --------------------------------------------------------------------------- cancellation


def test_cancelling_releases_payments_and_reapplies_them_to_another_invoice(book: Book) -> None:
    # I1 1000 (due Jan 31), I2 500 (due Feb 15); P1 1200 → I1 1000, I2 200 → I2 open 300.
    # I1 cancelled: its 1000 comes back, 300 pays I2, 700 is unapplied.
    # Totals without I1: 500 invoiced - 1200 received = -700 = 0 open - 700 unapplied.
    book.send(invoice("I1", "1000.00", due="2024-01-31"), invoice("I2", "500.00", due="2024-02-15"),
              payment("P1", "1200.00", "2024-01-05"))
    assert book.open("I2") == M("300")
    book.send(cancel("I1", "2024-01-10"))
    i1 = book["I1"]
    assert (i1.open_amount, i1.status, i1.settled_date, i1.applied) == (0, "cancelled", None, {})
    assert (book.open("I2"), book["I2"].status, book.unapplied()) == (M("0"), "paid", M("700"))
    assert book["I2"].settled_date == date(2024, 1, 10)
    t = book.totals()
    assert (t["invoiced"], t["received"], t["open"], t["unapplied"]) == (M("500"), M("1200"), 0, M("700"))


def test_cancelling_twice_changes_nothing_and_unknown_invoices_are_refused(book: Book) -> None:
    book.send(invoice("I1", "1000.00"), cancel("I1", "2024-01-02"))
    assert book.send(cancel("I1", "2024-01-03"))
    assert book.event_types() == ["MessageAcknowledged"]
    book.refuses(cancel("I9", "2024-01-03"), UnknownInvoice)


def test_a_cancelled_invoice_takes_no_payment(book: Book) -> None:
    # I1 cancelled; a payment allocated to it stays unapplied.
    book.send(invoice("I1", "1000.00"), cancel("I1", "2024-01-02"))
    book.send(payment("P1", "400.00", "2024-01-03", allocations={"I1": "400.00"}))
    assert (book.open("I1"), book.unapplied()) == (0, M("400"))


# --------------------------------------------------------------------------- write-offs


def test_a_partial_then_full_write_off(book: Book) -> None:
    # 1000: 200 written off Jan 10 → open 800; the remaining 800 written off Feb 20 →
    # open 0, status written_off, settled Feb 20.
    book.send(invoice("I1", "1000.00"), write_off("I1", "200.00", "2024-01-10"))
    assert (book.open("I1"), book["I1"].status) == (M("800"), "partially_paid")
    book.send(write_off("I1", "800.00", "2024-02-20"))
    inv = book["I1"]
    assert (inv.open_amount, inv.status, inv.settled_date) == (0, "written_off", date(2024, 2, 20))
    assert book.totals()["written_off"] == M("1000")


def test_a_write_off_above_the_open_amount_or_of_nothing_is_refused(book: Book) -> None:
    # 1000 paid 600 → open 400: writing off 400.01 is refused, 400 is fine.
    book.send(invoice("I1", "1000.00"), payment("P1", "600.00", "2024-01-05"))
    book.refuses(write_off("I1", "400.01", "2024-01-06"), AmountExceedsOpen)
    book.refuses(write_off("I1", "0.00", "2024-01-06"))
    book.refuses(write_off("I9", "1.00", "2024-01-06"), UnknownInvoice)
    book.send(write_off("I1", "400.00", "2024-01-06"))
    assert (book.open("I1"), book["I1"].status) == (0, "written_off")


# --------------------------------------------------------------------------- credit notes


def test_a_credit_note_for_an_invoice_applies_to_it(book: Book) -> None:
    # 1000 - credit note 300 → open 700; credited 300.
    book.send(invoice("I1", "1000.00"), credit_note("N1", "300.00", "2024-01-05", "I1"))
    assert (book.open("I1"), book.totals()["credited"], book.unapplied()) == (M("700"), M("300"), 0)


def test_a_credit_note_larger_than_its_invoice_goes_on_to_the_others(book: Book) -> None:
    # I1 1000 (due Jan 31), I2 500 (due Feb 10); note 1200 for I2 → I2 paid 500, rest 700 → I1 open 300.
    book.send(invoice("I1", "1000.00", due="2024-01-31"), invoice("I2", "500.00", due="2024-02-10"))
    book.send(credit_note("N1", "1200.00", "2024-01-05", "I2"))
    assert (book.open("I2"), book.open("I1"), book.unapplied()) == (0, M("300"), 0)


def test_a_credit_note_on_account_pays_the_oldest_due_invoice(book: Book) -> None:
    # I1 due Feb 10, I2 due Jan 20: a 200 note on account goes to I2 → I2 open 300.
    book.send(invoice("I1", "1000.00", due="2024-02-10"), invoice("I2", "500.00", due="2024-01-20"))
    book.send(credit_note("N1", "200.00", "2024-01-05"))
    assert (book.open("I1"), book.open("I2")) == (M("1000"), M("300"))


def test_a_credit_note_on_account_without_open_invoices_is_unapplied_until_one_comes(book: Book) -> None:
    # note 250 → unapplied 250; then I1 1000 → open 750, unapplied 0.
    book.send(credit_note("N1", "250.00", "2024-01-05"))
    assert book.unapplied() == M("250")
    book.send(invoice("I1", "1000.00", "2024-01-08", "2024-02-07"))
    assert (book.open("I1"), book.unapplied()) == (M("750"), 0)


def test_a_credit_note_before_its_invoice_waits_for_it(book: Book) -> None:
    # I1 1000 open; note 300 for I9 (not yet issued) is earmarked: I1 keeps 1000 open.
    # I9 600 arrives → 300 applied → I9 open 300.
    book.send(invoice("I1", "1000.00"), credit_note("N1", "300.00", "2024-01-05", "I9"))
    assert (book.open("I1"), book.unapplied()) == (M("1000"), M("300"))
    assert book.account.credits["credit_note:N1"].free == 0
    book.send(invoice("I9", "600.00", "2024-01-06", "2024-02-05"))
    assert (book.open("I9"), book.open("I1"), book.unapplied()) == (M("300"), M("1000"), 0)


def test_a_credit_note_in_another_currency_than_its_invoice_is_refused(book: Book) -> None:
    book.send(invoice("I1", "1000.00"))
    error = book.refuses(credit_note("N1", "100.00", "2024-01-05", "I1", currency="USD"), CurrencyMismatch)
    assert "I1" in str(error) and "USD" in str(error)


def test_a_credit_note_never_earns_a_cash_discount(book: Book) -> None:
    # 1000 2/10: a 980 note on day 2 leaves 20 open (a discount is for cash only).
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), credit_note("N1", "980.00", "2024-01-02", "I1"))
    assert (book.open("I1"), book.totals()["discounts"]) == (M("20"), 0)


# --------------------------------------------------------------------------- payments


def test_explicit_allocations_are_applied_as_given(book: Book) -> None:
    # I1 1000 due Jan 31, I2 500 due Jan 15: 600 allocated to I1 goes to I1, not the older I2.
    book.send(invoice("I1", "1000.00", due="2024-01-31"), invoice("I2", "500.00", due="2024-01-15"))
    book.send(payment("P1", "600.00", "2024-01-05", allocations={"I1": "600.00"}))
    assert (book.open("I1"), book.open("I2")) == (M("400"), M("500"))


def test_an_allocation_is_capped_at_the_open_amount_and_the_rest_goes_on(book: Book) -> None:
    # I1 1000 (due Jan 31), I2 500 (due Jan 15). P1 800 allocating 700 to I2: I2 takes 500;
    # the 200 excess and the 100 unallocated go to I1 → I1 open 700.
    book.send(invoice("I1", "1000.00", due="2024-01-31"), invoice("I2", "500.00", due="2024-01-15"))
    book.send(payment("P1", "800.00", "2024-01-05", allocations={"I2": "700.00"}))
    assert (book.open("I2"), book.open("I1"), book.unapplied()) == (0, M("700"), 0)


def test_auto_allocation_goes_oldest_due_date_first(book: Book) -> None:
    # due dates: I1 Feb 20, I2 Jan 20 (issued Jan 3), I3 Jan 20 (issued Jan 2), I4 Jan 20 (issued Jan 2).
    # Order: I3 (Jan 20, Jan 2, "I3"), I4 (Jan 20, Jan 2, "I4"), I2 (Jan 20, Jan 3), I1.
    # P1 250: I3 100, I4 100, I2 50 → open I3 0, I4 0, I2 50, I1 100.
    book.send(invoice("I1", "100.00", "2024-01-01", "2024-02-20"),
              invoice("I2", "100.00", "2024-01-03", "2024-01-20"),
              invoice("I4", "100.00", "2024-01-02", "2024-01-20"),
              invoice("I3", "100.00", "2024-01-02", "2024-01-20"))
    book.send(payment("P1", "250.00", "2024-01-05"))
    assert [book.open(i) for i in ("I1", "I2", "I3", "I4")] == [M("100"), M("50"), 0, 0]
    (event,) = book.last
    assert [a["invoice"] for a in event.applications] == ["I3", "I4", "I2"]


def test_a_partial_payment_leaves_the_invoice_partially_paid(book: Book) -> None:
    book.send(invoice("I1", "1000.00"), payment("P1", "250.00", "2024-01-05"))
    assert (book.open("I1"), book["I1"].status, book["I1"].settled_date) == (M("750"), "partially_paid", None)


def test_an_overpayment_leaves_unapplied_cash(book: Book) -> None:
    # 1000 paid 1250 → open 0, unapplied 250.
    book.send(invoice("I1", "1000.00"), payment("P1", "1250.00", "2024-01-05"))
    assert (book.open("I1"), book["I1"].status, book.unapplied()) == (0, "paid", M("250"))


def test_unapplied_cash_pays_a_later_invoice_on_its_issue_date(book: Book) -> None:
    # prepayment 500 on Jan 2; I1 1000 issued Jan 10 → open 500; the application is dated Jan 10.
    # A second invoice of 300 on Jan 12 takes nothing (no cash left).
    book.send(payment("P1", "500.00", "2024-01-02"))
    book.send(invoice("I1", "1000.00", "2024-01-10", "2024-02-09"))
    assert (book.open("I1"), book.unapplied()) == (M("500"), 0)
    (event,) = book.last
    assert [(a["credit"], a["amount"], a["date"]) for a in event.applications] == [
        ("payment:P1", "500.00", "2024-01-10")
    ]


def test_unapplied_credits_are_used_oldest_first(book: Book) -> None:
    # P1 300 on Jan 5, N1 200 on Jan 3 (older), P2 100 on Jan 4: I1 250 takes N1 200 then P2 50.
    book.send(payment("P1", "300.00", "2024-01-05"), credit_note("N1", "200.00", "2024-01-03"),
              payment("P2", "100.00", "2024-01-04"))
    book.send(invoice("I1", "250.00", "2024-01-06", "2024-02-05"))
    assert book["I1"].applied == {"credit_note:N1": M("200"), "payment:P2": M("50")}
    assert book.unapplied() == M("350")


def test_a_payment_allocated_to_an_invoice_not_yet_issued_is_earmarked(book: Book) -> None:
    # I1 1000 open. P1 400 allocated to I9 (unknown) → earmarked, I1 untouched.
    # I9 300 arrives → takes 300; the spare 100 is free again and pays I1 → I1 open 900.
    book.send(invoice("I1", "1000.00"))
    book.send(payment("P1", "400.00", "2024-01-05", allocations={"I9": "400.00"}))
    assert (book.open("I1"), book.unapplied()) == (M("1000"), M("400"))
    book.send(invoice("I9", "300.00", "2024-01-06", "2024-02-05"))
    assert (book.open("I9"), book.open("I1"), book.unapplied()) == (0, M("900"), 0)


def test_a_payment_allocated_partly_to_a_future_invoice_pays_the_rest_now(book: Book) -> None:
    # I1 1000 open. P1 700: 400 earmarked for I9, 300 free → I1 open 700, unapplied 400.
    book.send(invoice("I1", "1000.00"))
    book.send(payment("P1", "700.00", "2024-01-05", allocations={"I9": "400.00"}))
    assert (book.open("I1"), book.unapplied()) == (M("700"), M("400"))


def test_currencies_are_kept_apart(book: Book) -> None:
    # EUR 1000 and USD 500 open; a USD payment of 600 pays only the USD invoice → USD unapplied 100.
    book.send(invoice("I1", "1000.00"), invoice("U1", "500.00", currency="USD"))
    book.send(payment("P1", "600.00", "2024-01-05", currency="USD"))
    assert (book.open("I1"), book.open("U1")) == (M("1000"), 0)
    assert (book.unapplied("EUR"), book.unapplied("USD")) == (0, M("100"))
    assert book.account.currencies() == {"EUR", "USD"}


def test_an_allocation_to_an_invoice_in_another_currency_is_refused(book: Book) -> None:
    book.send(invoice("I1", "1000.00"))
    book.refuses(payment("P1", "100.00", "2024-01-05", currency="USD", allocations={"I1": "100.00"}),
                 CurrencyMismatch)


# --------------------------------------------------------------------------- reversals


def test_a_reversal_reopens_what_the_payment_paid(book: Book) -> None:
    # 1000 paid Jan 5 (settled), reversed Jan 20 → open 1000 again, received 0.
    book.send(invoice("I1", "1000.00"), payment("P1", "1000.00", "2024-01-05"))
    book.send(reverse("P1", "2024-01-20"))
    inv = book["I1"]
    assert (inv.open_amount, inv.status, inv.settled_date) == (M("1000"), "open", None)
    assert (book.totals()["received"], book.unapplied()) == (0, 0)
    (event,) = book.last
    assert [(r["amount"], r["date"]) for r in event.releases] == [("1000.00", "2024-01-20")]


def test_a_reversal_removes_the_payments_unapplied_rest(book: Book) -> None:
    # 1000 paid 1300 → 300 unapplied; reversed → open 1000, unapplied 0.
    book.send(invoice("I1", "1000.00"), payment("P1", "1300.00", "2024-01-05"), reverse("P1", "2024-01-08"))
    assert (book.open("I1"), book.unapplied()) == (M("1000"), 0)


def test_after_a_reversal_other_unapplied_cash_pays_the_reopened_invoice(book: Book) -> None:
    # I1 1000 2/10: P1 980 Jan 5 settles it (discount 20). P2 300 Jan 6 is unapplied.
    # P1 reversed Jan 12: discount undone, I1 open 1000; P2 300 applies (300 < 980: no discount)
    # → open 700, unapplied 0, discounts 0.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "980.00", "2024-01-05"),
              payment("P2", "300.00", "2024-01-06"))
    assert (book.open("I1"), book.totals()["discounts"], book.unapplied()) == (0, M("20"), M("300"))
    book.send(reverse("P1", "2024-01-12"))
    assert (book.open("I1"), book.totals()["discounts"], book.unapplied()) == (M("700"), 0, 0)


def test_a_reversal_lets_another_payment_earn_the_discount_again(book: Book) -> None:
    # I1 1000 2/10 (deadline Jan 11). P1 980 Jan 5 → settled, discount 20. P2 980 Jan 8 unapplied.
    # P1 reversed Jan 20: P2 was received in time and covers 1000 - 20 → settles I1, discount 20.
    # As of any date the invoice has been paid since Jan 5 (release and re-payment both Jan 20).
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "980.00", "2024-01-05"),
              payment("P2", "980.00", "2024-01-08"))
    book.send(reverse("P1", "2024-01-20"))
    inv = book["I1"]
    assert (inv.open_amount, inv.discounts, book.unapplied()) == (0, {"payment:P2": M("20")}, 0)
    assert inv.settled_date == date(2024, 1, 5)


def test_a_reversal_undoes_a_discount_whose_cash_an_adjustment_took_back(book: Book) -> None:
    # I1 1000 2/10: P1 980 Jan 5 → discount 20. Adjusted to 20 on Jan 6: all 980 released
    # (unapplied 980), the 20 discount stays. P1 reversed Jan 7: the 980 goes and the
    # discount it earned is undone → I1 open 20 again.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "980.00", "2024-01-05"))
    book.send(adjust("I1", "20.00", "2024-01-06"))
    assert (book.open("I1"), book.unapplied(), book.totals()["discounts"]) == (0, M("980"), M("20"))
    book.send(reverse("P1", "2024-01-07"))
    assert (book.open("I1"), book.unapplied(), book.totals()["discounts"]) == (M("20"), 0, 0)


def test_a_reversed_earmarked_payment_no_longer_waits_for_its_invoice(book: Book) -> None:
    book.send(payment("P1", "400.00", "2024-01-05", allocations={"I9": "400.00"}),
              reverse("P1", "2024-01-06"))
    book.send(invoice("I9", "300.00", "2024-01-07", "2024-02-06"))
    assert (book.open("I9"), book.unapplied()) == (M("300"), 0)


def test_reversing_an_unknown_payment_is_refused_and_twice_changes_nothing(book: Book) -> None:
    book.refuses(reverse("P9", "2024-01-05"), UnknownPayment)
    book.send(payment("P1", "100.00", "2024-01-05"), reverse("P1", "2024-01-06"))
    assert book.send(reverse("P1", "2024-01-07"))
    assert book.event_types() == ["MessageAcknowledged"]


# --------------------------------------------------------------------------- cash discount


def test_a_discount_is_taken_when_paid_in_time(book: Book) -> None:
    # 1000 2/10: pay 500 on day 2, 480 on day 5 → settled, discount 20.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN))
    book.send(payment("P1", "500.00", "2024-01-02"))
    assert book.open("I1") == M("500")
    book.send(payment("P2", "480.00", "2024-01-05"))
    inv = book["I1"]
    assert (inv.open_amount, inv.status, inv.settled_date, inv.discount_taken) == (
        0, "paid", date(2024, 1, 5), M("20"))
    assert book.totals()["discounts"] == M("20")
    (event,) = book.last
    assert [(a["amount"], a["discount"]) for a in event.applications] == [("480.00", "20.00")]


def test_a_discount_on_the_last_day_of_the_window(book: Book) -> None:
    # issued Jan 1 with 10 days: Jan 11 is still in time → 980 settles 1000.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "980.00", "2024-01-11"))
    assert (book.open("I1"), book["I1"].discount_taken) == (0, M("20"))


def test_no_discount_after_the_deadline(book: Book) -> None:
    # 1000 2/10 paid 980 on Jan 12 (day 11) → 20 stays open.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "980.00", "2024-01-12"))
    assert (book.open("I1"), book["I1"].status, book.totals()["discounts"]) == (M("20"), "partially_paid", 0)


def test_paying_the_full_amount_earns_no_discount(book: Book) -> None:
    # 1000 2/10 paid 1000 on day 3 → no discount; a smaller on-time payment earns only its shortfall:
    # 500 2/10 paid 495 on day 3 → discount 5 (max would be 10).
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "1000.00", "2024-01-03",
                                                               allocations={"I1": "1000.00"}))
    assert (book.open("I1"), book["I1"].discount_taken) == (0, 0)
    book.send(invoice("I2", "500.00", terms=TWO_TEN), payment("P2", "495.00", "2024-01-03"))
    assert (book.open("I2"), book["I2"].discount_taken) == (0, M("5"))


def test_a_payment_short_of_the_discounted_amount_is_applied_without_discount(book: Book) -> None:
    # 1000 2/10 paid 979.99 on day 2: 1000 - 979.99 = 20.01 > 20 → open 20.01, no discount.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "979.99", "2024-01-02"))
    assert (book.open("I1"), book["I1"].discount_taken) == (M("20.01"), 0)


def test_the_maximum_discount_is_rounded_half_up_to_cents(book: Book) -> None:
    # 2% of 1000.25 = 20.005 → 20.01: 980.24 settles (shortfall 20.01); 980.23 does not.
    book.send(invoice("I1", "1000.25", terms=TWO_TEN), payment("P1", "980.24", "2024-01-02"))
    assert (book.open("I1"), book["I1"].discount_taken) == (0, M("20.01"))
    book.send(invoice("I2", "1000.25", terms=TWO_TEN), payment("P2", "980.23", "2024-01-02"))
    assert (book.open("I2"), book["I2"].discount_taken) == (M("20.02"), 0)


def test_only_one_discount_per_invoice(book: Book) -> None:
    # 1000 2/10: 985 on day 2 → discount 15. Adjusted to 1100 on day 3 → open 100.
    # 90 on day 4 would be within 100 - 22 but the invoice has had its discount → open 10.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), payment("P1", "985.00", "2024-01-02"))
    assert book["I1"].discount_taken == M("15")
    book.send(adjust("I1", "1100.00", "2024-01-03"), payment("P2", "90.00", "2024-01-04"))
    assert (book.open("I1"), book["I1"].discount_taken) == (M("10"), M("15"))


def test_a_prepayment_received_in_time_earns_the_discount(book: Book) -> None:
    # P1 980 received Jan 3; the 1000 2/10 invoice of Jan 1 arrives after it → settled, discount 20.
    book.send(payment("P1", "980.00", "2024-01-03"))
    book.send(invoice("I1", "1000.00", terms=TWO_TEN))
    assert (book.open("I1"), book["I1"].discount_taken, book.unapplied()) == (0, M("20"), 0)


def test_the_discount_uses_the_adjusted_amount(book: Book) -> None:
    # 500 2/10, adjusted to 1000 on day 2 (max discount now 20, not 10): 980 on day 3 settles it.
    book.send(invoice("I1", "500.00", terms=TWO_TEN), adjust("I1", "1000.00", "2024-01-02"),
              payment("P1", "980.00", "2024-01-03"))
    assert (book.open("I1"), book["I1"].discount_taken) == (0, M("20"))


def test_unapplied_cash_applied_at_an_adjustment_uses_the_new_amount_for_the_discount(book: Book) -> None:
    # I1 10.00 2/10 paid by P1 990.00 on Jan 2 → 980 unapplied. I1 adjusted to 1000 on Jan 3:
    # open 990, P1 (received in time) has 980 ≥ 990 - 20 → settled, discount 10.
    book.send(invoice("I1", "10.00", terms=TWO_TEN), payment("P1", "990.00", "2024-01-02"))
    book.send(adjust("I1", "1000.00", "2024-01-03"))
    assert (book.open("I1"), book["I1"].discount_taken, book.unapplied()) == (0, M("10"), 0)


# --------------------------------------------------------------------------- disputes


def test_an_open_dispute_is_shown_apart_and_stays_in_the_balance(book: Book) -> None:
    # 1000 with 300 disputed → open 1000, disputed 300.
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "300.00", "2024-01-05"))
    assert (book.open("I1"), book["I1"].disputed_amount, book.totals()["disputed"]) == (
        M("1000"), M("300"), M("300"))


def test_the_disputed_amount_never_exceeds_the_open_amount(book: Book) -> None:
    # 1000, disputed 800, then paid 500 → open 500, disputed min(800, 500) = 500.
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "800.00", "2024-01-05"),
              payment("P1", "500.00", "2024-01-06"))
    assert (book.open("I1"), book["I1"].disputed_amount) == (M("500"), M("500"))


def test_a_dispute_accepted_with_a_credit_lowers_the_open_amount(book: Book) -> None:
    # 1000 disputed 300; accepted with 300 credited → open 700, disputed 0, credited 300.
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "300.00", "2024-01-05"))
    book.send(resolve("D1", "I1", "accepted", "2024-01-09", credited="300.00"))
    assert (book.open("I1"), book["I1"].disputed_amount) == (M("700"), 0)
    assert (book.totals()["credited"], book.account.disputes["D1"].status) == (M("300"), "accepted")


def test_a_dispute_credit_above_the_open_amount_leaves_the_rest_unapplied(book: Book) -> None:
    # 1000 paid 900 → open 100; dispute 200 accepted with 200 credited → open 0, unapplied 100.
    book.send(invoice("I1", "1000.00"), payment("P1", "900.00", "2024-01-03"),
              dispute("D1", "I1", "200.00", "2024-01-04"),
              resolve("D1", "I1", "accepted", "2024-01-09", credited="200.00"))
    assert (book.open("I1"), book.unapplied(), book["I1"].settled_date) == (0, M("100"), date(2024, 1, 9))


def test_a_dispute_credit_never_earns_a_discount(book: Book) -> None:
    # 1000 2/10, dispute accepted on day 2 with 980 credited → 20 stays open.
    book.send(invoice("I1", "1000.00", terms=TWO_TEN), dispute("D1", "I1", "1000.00", "2024-01-02"),
              resolve("D1", "I1", "accepted", "2024-01-02", credited="980.00"))
    assert (book.open("I1"), book["I1"].discount_taken) == (M("20"), 0)


def test_a_rejected_dispute_just_closes(book: Book) -> None:
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "300.00", "2024-01-05"))
    book.send(resolve("D1", "I1", "rejected", "2024-01-09"))
    assert (book.open("I1"), book["I1"].disputed_amount, book.account.disputes["D1"].status) == (
        M("1000"), 0, "rejected")


def test_a_dispute_accepted_without_credit_closes_it(book: Book) -> None:
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "300.00", "2024-01-05"),
              resolve("D1", "I1", "accepted", "2024-01-09"))
    assert (book.open("I1"), book["I1"].disputed_amount, book.totals()["credited"]) == (M("1000"), 0, 0)


def test_a_dispute_before_its_invoice_waits_for_it(book: Book) -> None:
    # D1 300 on I9 (not issued): nothing disputed yet; I9 1000 arrives → disputed 300.
    book.send(dispute("D1", "I9", "300.00", "2024-01-05"))
    assert book.totals()["disputed"] == 0
    book.send(invoice("I9", "1000.00", "2024-01-06", "2024-02-05"))
    assert (book.open("I9"), book["I9"].disputed_amount) == (M("1000"), M("300"))


def test_a_dispute_accepted_with_a_credit_before_its_invoice_credits_it_when_it_arrives(book: Book) -> None:
    # D1 300 on I9 accepted with 300 credited, all before I9: the credit waits (its currency
    # is the invoice's). I9 1000 USD arrives → open 700, nothing disputed, credited 300 USD.
    book.send(dispute("D1", "I9", "300.00", "2024-01-05"),
              resolve("D1", "I9", "accepted", "2024-01-08", credited="300.00"))
    assert book.account.credits == {}
    book.send(invoice("I9", "1000.00", "2024-01-10", "2024-02-09", currency="USD"))
    assert book.event_types() == ["InvoiceIssued", "CreditReceived"]
    assert (book.open("I9"), book["I9"].disputed_amount) == (M("700"), 0)
    assert (book.totals("USD")["credited"], book.unapplied("USD")) == (M("300"), 0)
    assert book.account.credits["dispute:D1"].currency == "USD"


def test_dispute_refusals(book: Book) -> None:
    book.send(invoice("I1", "1000.00"))
    book.refuses(dispute("D1", "I1", "1000.01", "2024-01-05"), AmountExceedsOpen)
    book.refuses(resolve("D9", "I1", "rejected", "2024-01-05"), UnknownDispute)
    book.send(dispute("D1", "I1", "300.00", "2024-01-05"))
    book.refuses(dispute("D1", "I1", "400.00", "2024-01-05"), ConflictingDuplicate)
    assert book.send(dispute("D1", "I1", "300.00", "2024-01-05"))  # the same again: no change
    book.send(resolve("D1", "I1", "rejected", "2024-01-06"))
    assert book.send(resolve("D1", "I1", "accepted", "2024-01-07", credited="300.00"))  # already closed
    assert book.event_types() == ["MessageAcknowledged"]
    assert book.open("I1") == M("1000")


def test_a_dispute_credit_for_a_cancelled_invoice_is_unapplied_cash(book: Book) -> None:
    # I1 cancelled while disputed; the accepted 300 credit cannot pay it → unapplied 300.
    book.send(invoice("I1", "1000.00"), dispute("D1", "I1", "300.00", "2024-01-05"),
              cancel("I1", "2024-01-06"), resolve("D1", "I1", "accepted", "2024-01-07", credited="300.00"))
    assert (book["I1"].status, book.unapplied()) == ("cancelled", M("300"))


# --------------------------------------------------------------------------- customers


def test_a_customer_upsert_updates_the_profile_once(book: Book) -> None:
    assert book.account.customer_id == CUSTOMER and book.account.profile == {}
    book.send(upsert("Acme GmbH", country="DE", credit_limit={"currency": "EUR", "amount": "50000.00"}))
    assert book.event_types() == ["ProfileUpdated"]
    assert book.account.profile["name"] == "Acme GmbH"
    assert book.account.profile["credit_limit"] == {"currency": "EUR", "amount": "50000.00"}
    book.send(upsert("Acme GmbH", country="DE", credit_limit={"currency": "EUR", "amount": "50000.00"}))
    assert book.event_types() == ["MessageAcknowledged"]
    book.send(upsert("Acme AG"))
    assert (book.event_types(), book.account.profile["name"]) == (["ProfileUpdated"], "Acme AG")


# --------------------------------------------------------------------------- status, dates


def test_settled_date_days_late_and_days_to_settle(book: Book) -> None:
    # issued Jan 1, due Jan 31; 400 on Jan 20, 600 on Feb 10 → settled Feb 10:
    # days late = Feb 10 - Jan 31 = 10, days to settle = Feb 10 - Jan 1 = 40.
    book.send(invoice("I1", "1000.00"), payment("P1", "400.00", "2024-01-20"))
    assert (book["I1"].status, book["I1"].settled_date) == ("partially_paid", None)
    book.send(payment("P2", "600.00", "2024-02-10"))
    inv = book["I1"]
    assert (inv.status, inv.settled_date, days_late(inv), days_to_settle(inv)) == (
        "paid", date(2024, 2, 10), 10, 40)


def test_paid_early_is_never_late(book: Book) -> None:
    book.send(invoice("I1", "1000.00"), payment("P1", "1000.00", "2024-01-15"))
    assert (days_late(book["I1"]), days_to_settle(book["I1"])) == (0, 14)


def test_an_application_is_never_dated_before_the_invoice(book: Book) -> None:
    # cash received Jan 2 pays an invoice issued Jan 10: settled Jan 10, days to settle 0.
    book.send(payment("P1", "1000.00", "2024-01-02"), invoice("I1", "1000.00", "2024-01-10", "2024-02-09"))
    assert (book["I1"].settled_date, days_to_settle(book["I1"])) == (date(2024, 1, 10), 0)


def test_settled_on_the_date_of_the_last_piece_even_when_an_earlier_dated_one_comes_last(book: Book) -> None:
    # I1 1000: P1 600 received Jan 20 (booked first), then a 400 note dated Jan 10 for I1.
    # As of Jan 10..19 only the note is applied (open 600); zero only from Jan 20 → settled Jan 20.
    book.send(invoice("I1", "1000.00"), payment("P1", "600.00", "2024-01-20"))
    book.send(credit_note("N1", "400.00", "2024-01-10", "I1"))
    assert book["I1"].settled_date == date(2024, 1, 20)


def test_statuses(book: Book) -> None:
    book.send(invoice("A", "100.00"), invoice("B", "100.00"), invoice("C", "100.00"),
              invoice("D", "100.00"), invoice("E", "100.00"))
    book.send(payment("P1", "40.00", "2024-01-05", allocations={"B": "40.00"}),
              payment("P2", "100.00", "2024-01-05", allocations={"C": "100.00"}),
              cancel("D", "2024-01-05"), write_off("E", "100.00", "2024-01-05"))
    assert {i: book[i].status for i in "ABCDE"} == {
        "A": "open", "B": "partially_paid", "C": "paid", "D": "cancelled", "E": "written_off",
    }


def test_touched_outcomes_of_a_payment_over_several_invoices(book: Book) -> None:
    # I1 300 (due Jan 10), I2 500 (due Jan 20); P1 600 on Jan 15 → I1 paid, I2 open 200.
    book.send(invoice("I1", "300.00", due="2024-01-10"), invoice("I2", "500.00", due="2024-01-20"),
              payment("P1", "600.00", "2024-01-15"))
    (event,) = book.last
    assert event.touched == {
        "I1": {"currency": "EUR", "open_amount": "0.00", "settled_date": "2024-01-15", "status": "paid"},
        "I2": {"currency": "EUR", "open_amount": "200.00", "settled_date": None, "status": "partially_paid"},
    }


# --------------------------------------------------------------------------- rebuilding


def test_rebuilding_from_the_events_gives_the_same_account(book: Book) -> None:
    book.send(
        upsert("Acme"),
        invoice("I1", "1000.00", terms=TWO_TEN), invoice("I2", "500.00", due="2024-01-20"),
        invoice("U1", "700.00", currency="USD"),
        payment("P1", "980.00", "2024-01-05", allocations={"I1": "980.00"}),
        payment("P2", "900.00", "2024-01-06", allocations={"I7": "100.00"}),
        credit_note("N1", "50.00", "2024-01-07", "I2"),
        credit_note("N2", "100.00", "2024-01-07", currency="USD"),
        dispute("D1", "I2", "200.00", "2024-01-08"), dispute("D2", "I8", "10.00", "2024-01-08"),
        resolve("D2", "I8", "accepted", "2024-01-09", credited="10.00"),
        adjust("I2", "450.00", "2024-01-09"), write_off("U1", "100.00", "2024-01-10"),
        reverse("P1", "2024-01-11"), invoice("I7", "80.00", "2024-01-12", "2024-02-11"),
        invoice("I8", "60.00", "2024-01-12", "2024-02-11"), cancel("I2", "2024-01-13"),
        resolve("D1", "I2", "rejected", "2024-01-14"),
    )
    rebuilt = None
    for event in book.history:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, CustomerAccount)
    live = book.account
    assert rebuilt.invoices == live.invoices
    assert rebuilt.credits == live.credits
    assert rebuilt.disputes == live.disputes
    assert (rebuilt.processed, rebuilt.profile, rebuilt.version) == (
        live.processed, live.profile, live.version)
    assert all(rebuilt.totals(c) == live.totals(c) for c in ("EUR", "USD"))


# --------------------------------------------------------------------------- inbound schemas

VALID_INVOICE: dict[str, Any] = {
    "specversion": "1.0", "id": "erp-7f3a-000123", "source": "erp/eu-1", "type": "invoice.issued",
    "time": "2013-01-02T09:30:00Z", "subject": "CUST-0379", "datacontenttype": "application/json",
    "data": {"invoice_id": "INV-1", "customer_id": "CUST-0379", "issue_date": "2013-01-02",
             "due_date": "2013-02-01", "currency": "EUR", "amount": "1250.00",
             "terms": {"net_days": 30, "discount_percent": "2", "discount_days": 10}},
}
VALID_PAYMENT: dict[str, Any] = {
    "specversion": "1.0", "id": "erp-p-1", "source": "erp/eu-1", "type": "payment.received",
    "subject": "CUST-0379",
    "data": {"payment_id": "PAY-1", "customer_id": "CUST-0379", "currency": "EUR", "amount": "100.00",
             "received_date": "2013-01-05", "allocations": [{"invoice_id": "INV-1", "amount": "60.00"}]},
}


def encoded(base: dict[str, Any], **data_changes: Any) -> bytes:
    envelope = orjson.loads(orjson.dumps(base))
    envelope["data"].update(data_changes)
    return orjson.dumps(envelope)


def reason(raw: bytes | None, **kw: Any) -> str:
    with pytest.raises(InvalidMessage) as caught:
        decode_message(raw, **kw)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_a_valid_message_decodes_with_its_origin() -> None:
    decoded = decode_message(orjson.dumps(VALID_INVOICE), topic="ar.invoices", partition=2, offset=7,
                             key=b"CUST-0379")
    assert decoded.customer_id == "CUST-0379"
    assert decoded.data.amount == M("1250.00")  # type: ignore[union-attr]
    origin = decoded.origin
    assert (origin.source, origin.id, origin.type, origin.topic, origin.partition, origin.offset) == (
        "erp/eu-1", "erp-7f3a-000123", "invoice.issued", "ar.invoices", 2, 7)


def test_not_json() -> None:
    assert reason(b"{this is not json").startswith("not JSON")
    assert reason(b"\xff\xfe").startswith("not JSON")
    assert reason(None).startswith("not JSON")


@pytest.mark.parametrize(("change", "field"), [
    (lambda e: e.pop("specversion"), "specversion"),
    (lambda e: e.update(specversion="0.3"), "specversion"),
    (lambda e: e.pop("id"), "id"),
    (lambda e: e.pop("source"), "source"),
    (lambda e: e.pop("type"), "type"),
    (lambda e: e.update(data="a string"), "data"),
])
def test_not_a_cloudevent(change: Any, field: str) -> None:
    envelope = orjson.loads(orjson.dumps(VALID_INVOICE))
    change(envelope)
    text = reason(orjson.dumps(envelope))
    assert text.startswith("not a CloudEvent") and field in text
    assert reason(b"[1, 2]").startswith("not a CloudEvent")


def test_an_unknown_type() -> None:
    envelope = {**VALID_INVOICE, "type": "invoice.deleted"}
    assert reason(orjson.dumps(envelope)) == "type: unknown event type 'invoice.deleted'"


@pytest.mark.parametrize(("drop", "field"), [
    ("invoice_id", "data.invoice_id"), ("customer_id", "data.customer_id"), ("due_date", "data.due_date"),
    ("currency", "data.currency"), ("amount", "data.amount"),
])
def test_a_missing_required_field_is_named(drop: str, field: str) -> None:
    envelope = orjson.loads(orjson.dumps(VALID_INVOICE))
    del envelope["data"][drop]
    assert reason(orjson.dumps(envelope)).startswith(f"{field}: Field required")


@pytest.mark.parametrize(("changes", "field"), [
    ({"currency": "eur"}, "data.currency"),
    ({"issue_date": "2013-13-01"}, "data.issue_date"),
    ({"amount": "abc"}, "data.amount"),
    ({"amount": "NaN"}, "data.amount"),
    ({"terms": {"discount_percent": "120", "discount_days": 10}}, "data.terms.discount_percent"),
])
def test_a_schema_violation_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert reason(encoded(VALID_INVOICE, **changes)).startswith(f"{field}:")


def test_a_negative_amount_is_refused() -> None:
    assert "amount must not be negative" in reason(encoded(VALID_INVOICE, amount="-5.00"))
    write_off_event = {**VALID_INVOICE, "type": "invoice.written_off",
                       "data": {"customer_id": "CUST-0379", "invoice_id": "INV-1", "amount": "-3",
                                "effective_date": "2013-01-03", "reason": "x"}}
    assert "amount must not be negative" in reason(orjson.dumps(write_off_event))
    text = reason(encoded(VALID_PAYMENT, allocations=[{"invoice_id": "INV-1", "amount": "-1.00"}]))
    assert "allocations[0].amount must not be negative" in text
    resolved = {**VALID_INVOICE, "type": "dispute.resolved",
                "data": {"customer_id": "CUST-0379", "dispute_id": "D1", "invoice_id": "INV-1",
                         "resolved_date": "2013-01-09", "outcome": "accepted", "credited_amount": "-5.00"}}
    assert "data: credited_amount must not be negative" in reason(orjson.dumps(resolved))


@pytest.mark.parametrize("amount", [1250.0, 1250, True])
def test_a_json_number_amount_is_refused(amount: Any) -> None:
    assert reason(encoded(VALID_INVOICE, amount=amount)).startswith("data.amount: must be a decimal string")


def test_a_json_number_in_an_allocation_is_refused() -> None:
    text = reason(encoded(VALID_PAYMENT, allocations=[{"invoice_id": "INV-1", "amount": 60.0}]))
    assert text.startswith("data.allocations.0.amount: must be a decimal string")


@pytest.mark.parametrize(("amount", "currency", "digits"), [
    ("1250.001", "EUR", 2), ("1250.5", "JPY", 0), ("1.0001", "KWD", 3),
])
def test_too_many_decimals_for_the_currency_are_refused(amount: str, currency: str, digits: int) -> None:
    text = reason(encoded(VALID_INVOICE, amount=amount, currency=currency))
    assert "amount" in text and f"more than {digits} decimal digits for {currency}" in text


def test_the_currencys_own_decimals_are_accepted() -> None:
    decoded = decode_message(encoded(VALID_INVOICE, amount="1250.125", currency="KWD"), key=b"CUST-0379")
    assert decoded.data.amount == M("1250.125")  # type: ignore[union-attr]


def test_too_many_decimals_in_an_allocation_name_the_allocation() -> None:
    text = reason(encoded(VALID_PAYMENT, allocations=[{"invoice_id": "INV-1", "amount": "1.001"}]))
    assert "allocations[0].amount" in text


def test_other_rules_of_the_schemas() -> None:
    assert "due_date must not be before issue_date" in reason(encoded(VALID_INVOICE, due_date="2012-12-31"))
    assert "amount must be positive" in reason(encoded(VALID_INVOICE, amount="0"))
    over = [{"invoice_id": "I", "amount": "101"}]
    assert "exceeds amount" in reason(encoded(VALID_PAYMENT, allocations=over))
    resolved = {**VALID_INVOICE, "type": "dispute.resolved",
                "data": {"customer_id": "CUST-0379", "dispute_id": "D1", "invoice_id": "INV-1",
                         "resolved_date": "2013-01-09", "outcome": "rejected", "credited_amount": "5.00"}}
    assert "credited_amount is only allowed with outcome 'accepted'" in reason(orjson.dumps(resolved))
    resolved["data"] = {**resolved["data"], "outcome": "maybe"}
    del resolved["data"]["credited_amount"]
    assert reason(orjson.dumps(resolved)).startswith("data.outcome:")


def test_subject_and_key_must_name_the_customer() -> None:
    assert reason(orjson.dumps({**VALID_INVOICE, "subject": "CUST-1"})).startswith("subject:")
    assert reason(orjson.dumps(VALID_INVOICE), key=b"CUST-1").startswith("key:")


def test_parse_envelope_and_validate_event_directly() -> None:
    with pytest.raises(InvalidMessage, match="must be a JSON object"):
        parse_envelope([VALID_INVOICE])
    envelope = parse_envelope({**VALID_INVOICE, "type": "invoice.unknown"})
    with pytest.raises(InvalidMessage, match=r"^type: "):
        validate_event(envelope)
