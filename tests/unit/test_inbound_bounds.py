"""The edge's bounds on inbound messages (shared.erp_events): beyond them a message is refused
with the field named, so that nothing behind the edge (date arithmetic, read-model columns, the
producer's size limit, the event store's JSON encoder) can fail on it."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson
import pytest
from eventsourcing.persistence import Notification

from services.ledger.domain import CustomerAccount
from services.ledger.domain.errors import BeyondCapacity
from shared.consumer import DEADLETTER_ORIGINAL_BYTES, deadletter_event
from shared.envelope import CloudEvent, encode_event
from shared.erp_events import (
    MAX_ALLOCATIONS,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    InboundMessage,
    InvalidMessage,
    Limits,
    decode_message,
)
from shared.money import MAX_ACCOUNT_TOTAL, MAX_AMOUNT
from shared.outbox import MAX_OUTBOUND_BYTES, Outbound, trimmed
from tests.unit.test_ledger_domain import VALID_INVOICE, VALID_PAYMENT, encoded

KEY = b"CUST-0379"


def reason(raw: bytes, *, key: bytes | None = KEY, topic: str | None = None, **kw: Any) -> str:
    with pytest.raises(InvalidMessage) as caught:
        decode_message(raw, key=key, topic=topic, **kw)
    return caught.value.reason


def test_an_amount_at_the_ceiling_is_accepted_and_one_cent_more_is_refused() -> None:
    decoded = decode_message(encoded(VALID_INVOICE, amount=str(MAX_AMOUNT)), key=KEY)
    assert decoded.data.amount == MAX_AMOUNT  # type: ignore[union-attr]
    text = reason(encoded(VALID_INVOICE, amount=str(MAX_AMOUNT + Decimal("0.01"))))
    assert "amount" in text and "exceeds the largest amount" in text


@pytest.mark.parametrize("amount", ["1000000000000000.00", "1e30", "9" * 60])
def test_amounts_no_read_model_can_hold_are_refused(amount: str) -> None:
    assert "amount" in reason(encoded(VALID_INVOICE, amount=amount))


def test_a_business_maximum_lowers_the_ceiling_for_every_money_field() -> None:
    limits = Limits(max_amount=Decimal("1000.00"))
    assert "data.amount: 1000.01 exceeds the largest amount accepted, 1000.00" in reason(
        encoded(VALID_INVOICE, amount="1000.01"), limits=limits)
    customer = {"specversion": "1.0", "id": "erp-c-1", "source": "erp/eu-1", "type": "customer.upserted",
                "data": {"customer_id": "CUST-0379", "name": "Acme",
                         "credit_limit": {"currency": "EUR", "amount": "1000.01"}}}
    assert "data.credit_limit.amount: 1000.01 exceeds" in reason(orjson.dumps(customer), limits=limits)
    decode_message(encoded(VALID_INVOICE, amount="1000.00"), key=KEY, limits=limits)


def test_an_amount_text_too_long_to_be_an_amount_is_refused_before_it_is_parsed() -> None:
    assert "characters long" in reason(encoded(VALID_INVOICE, amount="0" * 65 + "1"))


@pytest.mark.parametrize("field", ["issue_date", "due_date"])
@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-25", "9999-12-31", "3000-01-01", "1899-12-31"])
def test_dates_outside_the_supported_range_are_refused(field: str, value: str) -> None:
    changes = {"issue_date": "2026-01-01", "due_date": "2026-01-31", field: value}
    if field == "issue_date" and value > "2026":
        changes["due_date"] = value  # due not before issue: the range is what refuses it
    text = reason(encoded(VALID_INVOICE, **changes))
    assert text.startswith(f"data.{field}: {value} is outside the dates accepted, 1900-01-01 to 2999-12-31")


@pytest.mark.parametrize("value", [20260101, "2026-01-01T00:00:00", "20260101", "2026-W01-1"])
def test_a_date_is_an_iso_date_string_and_nothing_else(value: object) -> None:
    assert "data.issue_date" in reason(encoded(VALID_INVOICE, issue_date=value))


def test_dates_at_the_ends_of_the_range_with_discount_terms_are_accepted() -> None:
    for day in ("1900-01-01", "2999-12-31"):
        decode_message(encoded(VALID_INVOICE, issue_date=day, due_date=day,
                               terms={"net_days": 3650, "discount_percent": "2", "discount_days": 3650}),
                       key=KEY)


def test_term_days_are_bounded() -> None:
    text = reason(encoded(VALID_INVOICE, terms={"discount_percent": "2", "discount_days": 3651}))
    assert "data.terms.discount_days" in text


def test_a_currency_not_in_iso_4217_is_refused() -> None:
    assert "data.currency" in reason(encoded(VALID_INVOICE, currency="XYZ"))
    decode_message(encoded(VALID_INVOICE, currency="CHF"), key=KEY)


def test_too_many_allocations_are_refused() -> None:
    allocations = [{"invoice_id": f"INV-{i}", "amount": "0.01"} for i in range(MAX_ALLOCATIONS + 1)]
    assert "data.allocations" in reason(encoded(VALID_PAYMENT, amount="100000.00", allocations=allocations))


def test_strings_are_bounded() -> None:
    assert "data.attributes" in reason(encoded(VALID_INVOICE, attributes={"region": "x" * 1001}))
    attributes = {f"a{i}": "x" for i in range(101)}
    assert "data.attributes" in reason(encoded(VALID_INVOICE, attributes=attributes))
    assert "data.reference" in reason(encoded(VALID_INVOICE, reference="r" * 4001))


def test_a_message_larger_than_the_limit_is_refused_unread() -> None:
    raw = encoded(VALID_INVOICE, reference="r" * MAX_MESSAGE_BYTES)
    assert reason(raw).startswith(f"message: {len(raw)} bytes")


def test_json_nested_deeper_than_the_store_can_write_is_refused() -> None:
    nested: Any = "x"
    for _ in range(MAX_JSON_DEPTH + 1):
        nested = [nested]
    text = reason(encoded(VALID_INVOICE, attributes_extra=nested))
    assert "data.attributes_extra: nested more than" in text
    terms = {"net_days": 30, "notes": nested}
    assert "data.terms.notes: nested more than" in reason(encoded(VALID_INVOICE, terms=terms))
    customer = {"specversion": "1.0", "id": "erp-c-1", "source": "erp/eu-1", "type": "customer.upserted",
                "data": {"customer_id": "CUST-0379", "name": "Acme", "contacts": [{"phones": nested}]}}
    assert "data.contacts: nested more than" in reason(orjson.dumps(customer))
    # orjson's own limit (1,024 levels) is a JSON error
    assert reason(b'{"a":' * 2000 + b"1" + b"}" * 2000).startswith("not JSON")


def test_invalid_utf8_is_not_json() -> None:
    assert reason(encoded(VALID_INVOICE).replace(b"INV-1", b"INV-\xff")).startswith("not JSON")


def test_a_kafka_message_needs_its_key_and_the_key_is_the_customer() -> None:
    assert reason(encoded(VALID_INVOICE), key=None).startswith("key: the message has no key")
    assert reason(encoded(VALID_INVOICE), key=b"CUST-OTHER").startswith("key:")


def test_the_type_must_belong_to_the_topic() -> None:
    text = reason(orjson.dumps(VALID_PAYMENT), topic="ar.invoices")
    assert text.startswith("type: 'payment.received' is not carried on ar.invoices")
    decode_message(orjson.dumps(VALID_PAYMENT), key=KEY, topic="ar.payments")


def test_an_empty_subject_is_not_a_cloud_event() -> None:
    assert "subject" in reason(orjson.dumps({**VALID_INVOICE, "subject": ""}))


def test_a_dead_letter_cuts_a_large_original_and_keeps_its_size_and_digest() -> None:
    original = b"x" * (2 * 1024 * 1024)
    letter = orjson.loads(deadletter_event("ledger", original, "ar.invoices", 0, 7, "message: too large",
                                           KEY))
    data = letter["data"]
    assert len(base64.b64decode(data["original"])) == DEADLETTER_ORIGINAL_BYTES
    assert data["original_truncated"] is True
    assert data["original_size"] == len(original)
    assert data["original_sha256"] == hashlib.sha256(original).hexdigest()
    small = orjson.loads(deadletter_event("ledger", b"{}", "ar.invoices", 0, 8, "why", KEY))["data"]
    assert base64.b64decode(small["original"]) == b"{}" and small["original_truncated"] is False


def test_a_dead_letter_of_a_message_without_a_key_has_no_subject() -> None:
    letter = orjson.loads(deadletter_event("ledger", b"{}", "ar.invoices", 0, 7, "key: missing", None))
    assert "subject" not in letter
    CloudEvent.model_validate(letter)  # still a valid envelope
    assert letter["data"]["key"] is None


def test_an_outbound_event_too_large_to_publish_goes_out_trimmed_with_a_pointer_to_the_store() -> None:
    notification = Notification(originator_id=uuid4(), originator_version=7, topic="x", state=b"", id=42)
    data = {"customer_id": "CUST-0379", "payment_id": "P-1", "amount": "10.00",
            "invoices": [{"invoice_id": f"INV-{i}", "open_amount": "0.00"} for i in range(30_000)]}
    value = encode_event(event_id="ledger:x:7:0", source="receivables/ledger",
                         event_type="ledger.payment_applied", subject="CUST-0379", data=data)
    assert len(value) > MAX_OUTBOUND_BYTES
    message = trimmed(Outbound("ar.ledger.events", "CUST-0379", value), notification)
    envelope = orjson.loads(message.value)
    assert (message.topic, message.key, envelope["id"], envelope["subject"]) == (
        "ar.ledger.events", "CUST-0379", "ledger:x:7:0", "CUST-0379")
    assert envelope["data"] == {
        "customer_id": "CUST-0379", "payment_id": "P-1", "amount": "10.00", "truncated": True,
        "original_size": len(value), "original_sha256": hashlib.sha256(value).hexdigest(),
        "event_store": {"notification_id": 42, "originator_id": str(notification.originator_id),
                        "originator_version": 7},
    }
    assert len(message.value) < 1000


def _message(base: dict[str, Any], message_id: str, **data_changes: Any) -> InboundMessage:
    envelope = orjson.loads(encoded(base, **data_changes))
    return decode_message(orjson.dumps({**envelope, "id": message_id}), key=KEY)


def test_an_account_refuses_money_beyond_what_one_balance_holds_and_takes_what_settles() -> None:
    account = CustomerAccount(customer_id="CUST-0379")
    count = int(MAX_ACCOUNT_TOTAL // MAX_AMOUNT)  # invoices at the ceiling that fit
    for number in range(count):
        account.handle(_message(VALID_INVOICE, f"m-{number}", invoice_id=f"INV-{number}",
                                amount=str(MAX_AMOUNT)))
    room = MAX_ACCOUNT_TOTAL - count * MAX_AMOUNT
    with pytest.raises(BeyondCapacity, match=r"^amount: customer CUST-0379's open items in EUR would come"):
        account.handle(_message(VALID_INVOICE, "over", invoice_id="INV-over", amount=str(room + 1)))
    # what fits still goes in; another currency is apart; money that settles is taken at the limit
    account.handle(_message(VALID_INVOICE, "fits", invoice_id="INV-fits", amount=str(room)))
    assert account.totals("EUR")["open"] == MAX_ACCOUNT_TOTAL
    account.handle(_message(VALID_INVOICE, "chf", invoice_id="INV-chf", amount="100.00", currency="CHF"))
    account.handle(_message(VALID_PAYMENT, "pay", payment_id="P-2", amount="100.00", allocations=[]))
    assert account.totals("EUR")["open"] == MAX_ACCOUNT_TOTAL - Decimal("100.00")
    # the refused invoice was not remembered as processed: once there is room, it goes in
    account.handle(_message(VALID_INVOICE, "over", invoice_id="INV-over", amount="100.00"))
    assert account.totals("EUR")["open"] == MAX_ACCOUNT_TOTAL


def test_no_text_may_hold_a_nul_character() -> None:
    assert "data.invoice_id" in reason(encoded(VALID_INVOICE, invoice_id="INV\x001"))
    assert "data.attributes" in reason(encoded(VALID_INVOICE, attributes={"region": "no\x00rth"}))
    assert "not a CloudEvent" in reason(orjson.dumps({**VALID_INVOICE, "id": "erp\x00-1"}))
