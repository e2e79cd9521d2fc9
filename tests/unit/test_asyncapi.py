"""The AsyncAPI document (docs/asyncapi.yaml) against the models, the official schema and the
translators' real output.

- the checked-in document is what ``python -m shared.asyncapi`` generates from the models;
- it validates against the official AsyncAPI 3.0.0 JSON Schema (tests/data/asyncapi/, see
  its README) with ``jsonschema``'s Draft 7 validator;
- what the ledger, dunning and credit translators publish, driven by real aggregates in
  memory, validates against ``shared.outbound_events`` (models that forbid unknown fields)
  and, whole envelope and all, against the message's payload schema in the document; so do
  the dead letters, a trimmed outbound event, and the ERP messages of a generated book;
- every inbound and outbound type is in the document.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from eventsourcing.persistence import Notification
from pydantic import ValidationError

from bench.book import generate_book
from services.credit import outbound as credit_outbound
from services.credit.domain import CreditAccount, default_rules
from services.credit.domain.securities import security_record
from services.dunning import outbound as dunning_outbound
from services.dunning.domain import DunningAccount, default_policy
from services.dunning.domain.plans import Instalment
from services.dunning.domain.rendering import Renderer
from services.dunning.domain.statements import StatementFigures
from services.ledger import outbound as ledger_outbound
from services.ledger.domain import CustomerAccount, LedgerError
from shared import asyncapi
from shared.consumer import deadletter_event
from shared.erp_events import (
    EVENT_TYPES,
    TOPIC_TYPES,
    InvalidMessage,
    decode_message,
)
from shared.ledger_feed import Fact
from shared.outbound_events import OUTBOUND_TYPES, PUBLISHED, TruncatedData
from shared.outbox import MAX_OUTBOUND_BYTES, Outbound, trimmed
from tests.unit.ledger_feed_customer import LedgerFedCustomer

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"
D = date.fromisoformat
M = Decimal


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(asyncapi.DOC_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def payload_validator(event_type: str) -> jsonschema.Draft7Validator:
    """The message's payload schema, its references resolved in the document."""
    doc = document()
    return jsonschema.Draft7Validator({"$ref": f"#/components/messages/{event_type}/payload",
                                      "components": doc["components"]})


def check_published(envelope: dict[str, Any]) -> None:
    """A published message: its data by the model, the whole envelope by the document."""
    model = OUTBOUND_TYPES[envelope["type"]]
    model.model_validate(envelope["data"])
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}"
              for e in payload_validator(envelope["type"]).iter_errors(envelope)]
    assert not errors, (envelope["type"], errors)


# --------------------------------------------------------------------------- the document


def test_the_checked_in_document_is_what_the_models_generate() -> None:
    assert asyncapi.DOC_PATH.read_text(encoding="utf-8") == asyncapi.render(), (
        f"docs/asyncapi.yaml is out of date with the models: run `{asyncapi.REGENERATE}`")
    assert asyncapi.main(["--check"]) == 0


def test_the_document_validates_against_the_official_asyncapi_3_0_0_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(document())]
    assert not errors
    # the validator does catch a document that is not AsyncAPI 3.0.0
    broken = yaml.safe_load(asyncapi.render())
    broken["operations"]["ledger.send.ar.ledger.events"]["action"] = "publish"  # AsyncAPI 2's word
    broken["components"]["schemas"]["InvoiceChanged"]["discriminator"] = {"propertyName": "change"}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_type_is_in_the_document_on_its_topic() -> None:
    doc = document()
    channels = {name: set(channel["messages"]) for name, channel in doc["channels"].items()}
    for topic, types in TOPIC_TYPES.items():
        assert channels[topic] == set(types)
    for topic, (_, _, types) in PUBLISHED.items():
        assert channels[topic] == set(types)
    assert set(doc["components"]["messages"]) == set(EVENT_TYPES) | set(OUTBOUND_TYPES)
    assert {m["address"] for m in doc["channels"].values()} == set(TOPIC_TYPES) | set(PUBLISHED)
    # every message is someone's: sent or received by an operation of the platform
    handled = {ref["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values() for ref in op["messages"]}
    assert handled == set(EVENT_TYPES) | set(OUTBOUND_TYPES)


# --------------------------------------------------------------------------- driving the services


class _Repository:
    """``app.repository.get`` of an application, from the events recorded in memory."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def get(self, aggregate_id: Any, version: int | None = None) -> Any:
        aggregate = None
        for event in self.events:
            wanted = version is None or event.originator_version <= version
            if event.originator_id == aggregate_id and wanted:
                aggregate = event.mutate(aggregate)
        return aggregate


class _App:
    def __init__(self) -> None:
        self.repository = _Repository()


class Customer(LedgerFedCustomer):
    """One customer's ledger, dunning and credit accounts in memory, fed as the services feed
    them; every message the three translators publish is kept (decoded)."""

    def __init__(self, customer_id: str, **profile: Any) -> None:
        self.dunning = DunningAccount(customer_id)
        self.credit = CreditAccount(customer_id)
        self.rules = default_rules()
        self.policy = default_policy()
        self.dunning_app = _App()
        self.translate_dunning = dunning_outbound.make_translate(self.dunning_app)  # type: ignore[arg-type]
        self.published: list[dict[str, Any]] = []
        self.collect()
        super().__init__(customer_id, **profile)

    def ledger_message(self, message: Outbound) -> None:
        self._keep(message)

    def observe(self, fact: Fact) -> None:
        self.dunning.observe(fact)
        self.credit.observe(fact, self.rules)

    def collect(self) -> None:
        for event in self.dunning.collect_events():
            self.dunning_app.repository.events.append(event)
            for message in self.translate_dunning(event):
                self._keep(message)
        for event in self.credit.collect_events():
            for message in credit_outbound.translate(event):
                self._keep(message)

    def _keep(self, message: Outbound) -> None:
        decoded = orjson.loads(message.value)
        assert message.key == decoded["subject"] == decoded["data"]["customer_id"] == self.customer_id
        self.published.append(decoded)

    def dun(self, first: str, last: str, render: Renderer | None = None) -> None:
        day = D(first)
        while day <= D(last):
            self.dunning.run(day, self.policy, render)
            self.credit.review(day, self.rules)
            self.collect()
            day += timedelta(days=1)

    def promise(self, made_on: str, promised: str, amount: str) -> None:
        self.dunning.promise(made_on=D(made_on), promised_date=D(promised), amount=M(amount),
                             policy=self.policy)
        self.collect()

    def plan(self, plan_id: str, requested_on: str, *instalments: tuple[str, str],
             invoice_ids: list[str] | None = None) -> None:
        self.dunning.request_plan(plan_id=plan_id, currency="EUR", invoice_ids=invoice_ids,
                                  reason="cash flow", requested_on=D(requested_on), actor="collector",
                                  instalments=[Instalment(D(d), M(a)) for d, a in instalments])
        self.collect()

    def decide(self, plan_id: str, on: str, *, approve: bool) -> None:
        if approve:
            self.dunning.approve_plan(plan_id, approved_on=D(on), actor="manager")
        else:
            self.dunning.reject_plan(plan_id, reason="too long", rejected_on=D(on), actor="manager")
        self.collect()

    def statement(self, as_of: str, closing: str, render: Renderer, *, answer: str, balance: str) -> None:
        day = D(as_of)
        figures = StatementFigures("EUR", day.replace(day=1), day, M("0.00"), M(closing), M("0.00"),
                                   [{"invoice_id": "L9", "issue_date": as_of, "due_date": as_of,
                                     "amount": closing, "open_amount": closing, "days_past_due": 0}])
        policy = self.policy.model_copy(update={"confirm_balance_every": 1})
        (issued,) = self.dunning.issue_statements(day, [figures], policy, render.statement)
        self.collect()
        self.dunning.respond_to_statement(issued["statement_id"], response=answer, balance=M(balance),
                                          note="as we see it", responded_on=day, actor="portal")
        self.collect()

    def types(self) -> set[str]:
        return {message["type"] for message in self.published}


def a_life() -> list[dict[str, Any]]:
    """Customers whose lives make every published type (and each variant of one) at least once."""
    renderer = Renderer.from_package()
    published = []

    # payments with and without a cash discount, unapplied cash, adjustments, cancellation,
    # write-off, reversal, credit notes, disputes accepted (with a credit) and rejected
    a = Customer("C-A", country="GB", segment="retail", payment_terms_days=30, dunning_policy="default",
                 contacts=[{"email": "ap@example.com"}], loyalty_tier="gold",
                 credit_limit={"currency": "EUR", "amount": "5000.00"})
    a.invoice("I1", "1000.00", "2025-01-01", "2025-01-31", reference="PO-7", attributes={"region": "north"},
              terms={"net_days": 30, "discount_percent": "2", "discount_days": 10})
    a.pay("P1", "980.00", "2025-01-05")  # 2 % discount: settled
    a.pay("P2", "800.00", "2025-01-06")  # unapplied cash
    a.invoice("I2", "500.00", "2025-01-07", "2025-02-06")  # paid by the unapplied cash at once
    a.send("invoice.adjusted", invoice_id="I2", new_amount="400.00", effective_date="2025-01-08",
           reason="price correction")  # releases 100.00
    a.invoice("I3", "300.00", "2025-01-09", "2025-02-08")
    a.send("invoice.cancelled", invoice_id="I3", effective_date="2025-01-10", reason="issued in error")
    a.send("payment.reversed", payment_id="P2", effective_date="2025-01-11", reason="bounced")
    a.invoice("I4", "250.00", "2025-01-12", "2025-02-10")
    a.send("invoice.written_off", invoice_id="I4", amount="250.00", effective_date="2025-01-13",
           reason="uncollectable")
    a.send("credit_note.issued", credit_note_id="CN1", currency="EUR", amount="50.00",
           issue_date="2025-01-14", invoice_id="I4", reason="goodwill")
    a.invoice("I5", "700.00", "2025-01-15", "2025-02-14")
    a.send("dispute.opened", dispute_id="D1", invoice_id="I5", amount="200.00", opened_date="2025-01-16",
           reason="damaged goods")
    a.send("dispute.resolved", dispute_id="D1", invoice_id="I5", outcome="accepted",
           resolved_date="2025-01-17", credited_amount="200.00")
    a.send("dispute.opened", dispute_id="D2", invoice_id="I6", amount="100.00", opened_date="2025-01-18",
           reason="quality")  # before its invoice
    a.send("dispute.resolved", dispute_id="D2", invoice_id="I6", outcome="accepted",
           resolved_date="2025-01-19", credited_amount="100.00")
    a.invoice("I6", "300.00", "2025-01-20", "2025-02-19")  # the dispute credit waited for it
    a.send("dispute.opened", dispute_id="D3", invoice_id="I6", amount="50.00", opened_date="2025-01-21",
           reason="late")
    a.send("dispute.resolved", dispute_id="D3", invoice_id="I6", outcome="rejected",
           resolved_date="2025-01-22")
    a.send("customer.upserted", name="Acme Ltd", country="FR")
    published += a.published

    # dunning: notices (rendered) up to the hand-off to collections; credit: the overdue hold,
    # grades, a limit due for review and expired, a manual hold released by a user
    b = Customer("C-B", credit_limit={"currency": "EUR", "amount": "50000.00"})
    b.invoice("J1", "1250.00", "2025-01-01", "2025-01-31")
    b.credit.set_limit("USD", M("1000.00"), "carol", expires_on=D("2025-03-31"), review_on=D("2025-03-15"))
    hold = b.credit.place_manual_hold("alice", "call first")
    b.credit.release_hold(hold["hold_id"], "bob", "called")
    b.credit.register_security(security_record(  # announced by the review of 25 January
        security_id="G1", kind="bank_guarantee", currency="EUR", amount=M("500.00"), coverage_percent=None,
        valid_from=D("2025-01-01"), valid_until=D("2025-02-15"), issuer="Bank", reference=None, note=None),
        "carol", D("2025-01-02"))
    b.collect()
    b.dun("2025-01-25", "2025-05-10", renderer)
    b.pay("Q1", "1250.00", "2025-05-11")
    b.dun("2025-05-11", "2025-05-12")
    for warning_id in sorted(b.credit.warnings):  # (raised by the reviews above, some cleared)
        b.credit.acknowledge_warning(warning_id, "seen", "carol", D("2025-05-12"))
    b.collect()
    published += b.published

    # promises: one kept, one broken
    c = Customer("C-C")
    c.invoice("K1", "1000.00", "2025-01-01", "2025-01-31")
    c.invoice("K2", "400.00", "2025-01-02", "2025-02-01")
    c.dun("2025-02-01", "2025-02-24")
    c.promise("2025-02-25", "2025-03-10", "1000.00")
    c.pay("R1", "1000.00", "2025-03-08")  # kept
    c.promise("2025-03-09", "2025-03-12", "400.00")
    c.dun("2025-03-09", "2025-03-20")  # broken
    published += c.published

    # refunds: of a payment named, and of the oldest unapplied cash
    r = Customer("C-R")
    r.pay("RP1", "100.00", "2025-01-05")
    r.send("payment.refunded", refund_id="RF1", currency="EUR", amount="40.00", refund_date="2025-01-06",
           payment_id="RP1")
    r.send("payment.refunded", refund_id="RF2", currency="EUR", amount="10.00", refund_date="2025-01-07")
    published += r.published

    # prepayments: one held for its order until the order's invoice comes, one withdrawn
    q = Customer("C-Q")
    q.send("prepayment.requested", request_id="RQ1", currency="EUR", amount="300.00",
           requested_date="2025-01-02", due_date="2025-01-09", order_id="O1")
    q.pay("PQ1", "300.00", "2025-01-05", prepayment_request_id="RQ1")
    q.send("prepayment.requested", request_id="RQ2", currency="EUR", amount="100.00",
           requested_date="2025-01-02", due_date="2025-01-09")
    q.pay("PQ2", "100.00", "2025-01-06", prepayment_request_id="RQ2")
    q.invoice("QI1", "500.00", "2025-01-10", "2025-02-09", attributes={"order_id": "O1"})
    q.send("prepayment.cancelled", request_id="RQ2", effective_date="2025-01-11", reason="order dropped")
    # dunning and credit follow: QI1 took RQ1's 300.00, then RQ2's 100.00 once it was withdrawn
    assert [x.items.invoices["QI1"].open_amount for x in (q.dunning, q.credit)] == [Decimal("100.00")] * 2
    published += q.published

    # payment plans: one rejected, one broken after its first instalment (reminded of both),
    # one completed, one cancelled by a write-off
    p = Customer("C-P")
    p.invoice("L1", "600.00", "2025-01-01", "2025-01-31")
    p.plan("PL-0", "2025-02-05", ("2025-02-20", "600.00"))
    p.decide("PL-0", "2025-02-06", approve=False)
    p.plan("PL-1", "2025-02-07", ("2025-02-20", "300.00"), ("2025-03-20", "300.00"))
    p.decide("PL-1", "2025-02-08", approve=True)
    p.dun("2025-02-08", "2025-02-19", renderer)
    p.pay("R2", "300.00", "2025-02-19")
    p.dun("2025-02-20", "2025-03-31", renderer)  # instalment 2 missed: broken on 26 March
    p.invoice("L2", "200.00", "2025-04-01", "2025-04-15")
    p.plan("PL-2", "2025-04-20", ("2025-05-01", "200.00"), invoice_ids=["L2"])
    p.decide("PL-2", "2025-04-21", approve=True)
    p.pay("R3", "200.00", "2025-04-30", allocations=[{"invoice_id": "L2", "amount": "200.00"}])  # completed
    p.invoice("L3", "100.00", "2025-04-01", "2025-04-15")
    p.plan("PL-3", "2025-04-22", ("2025-05-10", "100.00"), invoice_ids=["L3"])
    p.send("invoice.written_off", invoice_id="L3", amount="100.00", effective_date="2025-04-23",
           reason="small balance")  # cancelled
    p.statement("2025-05-31", "300.00", renderer, answer="confirmed", balance="300.00")
    p.statement("2025-06-30", "300.00", renderer, answer="disputed", balance="250.00")
    published += p.published
    return published


@cache
def published_messages() -> tuple[dict[str, Any], ...]:
    return tuple(a_life())


def test_every_published_type_is_produced_and_validates_against_its_model_and_the_document() -> None:
    messages = published_messages()
    for message in messages:
        check_published(message)
    by_type = defaultdict(list)
    for message in messages:
        by_type[message["type"]].append(message["data"])
    assert set(by_type) == set(OUTBOUND_TYPES) - {"deadletter.rejected"}
    # each variant of the types that have several
    assert {d["change"] for d in by_type["ledger.invoice_changed"]} == {
        "adjusted", "cancelled", "written_off", "payment_reversed"}
    assert {d["credit_kind"] for d in by_type["ledger.payment_applied"]} == {
        "payment", "credit_note", "dispute_credit"}
    assert {d["change"] for d in by_type["credit.limit_changed"]} == {"set", "expired"}
    assert {d["reason"] for d in by_type["dunning.resumed"]} == {"promise_kept", "promise_broken"}
    assert {d["kind"] for d in by_type["dunning.notice_issued"]} == {"dunning", "instalment_reminder"}
    assert {d["outcome"] for d in by_type["ledger.dispute_closed"]} == {"accepted", "rejected"}
    assert {d["status"] for d in by_type["ledger.invoice_settled"]} == {"paid", "written_off"}
    assert any(d["text"] for d in by_type["dunning.notice_issued"])
    assert any(d["text"] is None for d in by_type["dunning.notice_issued"])


def test_the_ledger_translation_of_a_generated_book_validates() -> None:
    """Breadth: 40 customers' ERP messages through in-memory accounts (the mix of bench.book)."""
    book = generate_book(customers=20, events=1000, seed=11)
    accounts: dict[str, CustomerAccount] = {}
    inbound = 0
    kinds = set()
    for record in book.messages:
        try:
            message = decode_message(record.value, key=record.key)
        except InvalidMessage:
            continue
        raw = orjson.loads(record.value)
        errors = list(payload_validator(raw["type"]).iter_errors(raw))
        assert not errors, (raw["type"], errors[0].message)
        inbound += 1
        account = accounts.get(message.customer_id)
        if account is None:
            account = accounts[message.customer_id] = CustomerAccount(message.customer_id)
        try:
            account.handle(message)
        except LedgerError:
            continue
        for event in account.collect_events():
            for outbound in ledger_outbound.translate(event):
                decoded = orjson.loads(outbound.value)
                check_published(decoded)
                kinds.add(decoded["type"])
    assert inbound > 700
    # (the generated book has no refunds or prepayments yet: a_life's customers make them)
    assert kinds == set(PUBLISHED["ar.ledger.events"][2]) - {
        "ledger.refund_issued", "ledger.prepayment_requested", "ledger.prepayment_received",
        "ledger.prepayment_applied", "ledger.prepayment_cancelled"}


@pytest.mark.parametrize(("key", "original", "topic"), [
    (b"C-1", b'{"not": "valid"}', "ar.invoices"),
    (None, b"\xff" * 70_000, "ar.payments"),  # no key: no subject; cut original
    (b"C-2", None, None),  # no value, no topic (REST)
])
def test_dead_letters_validate(key: bytes | None, original: bytes | None, topic: str | None) -> None:
    raw = deadletter_event("ledger", original, topic, 0 if topic else None, 7 if topic else None,
                           "data.amount: must not be negative", key)
    check_published(orjson.loads(raw))


def test_a_trimmed_outbound_event_validates() -> None:
    data = {"customer_id": "C-1", "invoice_id": "I-1", "currency": "EUR", "amount": "10.00",
            "reference": "x" * (MAX_OUTBOUND_BYTES + 1)}
    value = orjson.dumps({"specversion": "1.0", "id": "ledger:a:1:0", "source": "receivables/ledger",
                          "type": "ledger.invoice_opened", "time": "2025-01-01T00:00:00Z", "subject": "C-1",
                          "datacontenttype": "application/json", "data": data})
    notification = Notification(id=5, originator_id="a", originator_version=1, topic="t", state=b"")
    cut = orjson.loads(trimmed(Outbound("ar.ledger.events", "C-1", value), notification).value)
    TruncatedData.model_validate(cut["data"])
    assert not list(payload_validator("ledger.invoice_opened").iter_errors(cut))


def test_the_models_are_exact_an_unknown_or_missing_field_is_caught() -> None:
    messages = {m["type"]: m["data"] for m in published_messages()}
    for event_type, model in OUTBOUND_TYPES.items():
        if event_type not in messages:
            continue
        data = messages[event_type]
        if event_type != "ledger.customer_updated":  # a profile passes the ERP's further fields on
            with pytest.raises(ValidationError):
                model.model_validate({**data, "unexpected": 1})
        with pytest.raises(ValidationError):
            model.model_validate({k: v for k, v in data.items() if k != "customer_id"})
    with pytest.raises(ValidationError):  # money is a decimal string, never a number
        OUTBOUND_TYPES["ledger.invoice_settled"].model_validate(
            {**messages["ledger.invoice_settled"], "open_amount": 0})


def test_the_models_import_nothing_from_services() -> None:
    source = (Path(asyncapi.__file__).parent / "outbound_events.py").read_text(encoding="utf-8")
    assert "services" not in {line.split()[1].split(".")[0] for line in source.splitlines()
                              if line.startswith(("import ", "from "))}


# --------------------------------------------------------------------------- known departures
# Cases where the translators once published what the models refuse: a reversal of unapplied
# cash without its currency, an exponent amount ("1E+3"), a profile field named ``origin``
# that replaced the ledger's own.


def _published_of(customer: Customer, event_type: str) -> list[dict[str, Any]]:
    published = [m for m in customer.published if m["type"] == event_type]
    assert published, f"nothing published as {event_type}"
    return published


def test_a_reversal_of_unapplied_cash_names_its_currency() -> None:
    c = Customer("X-1")
    c.pay("P1", "100.00", "2025-01-01")
    c.send("payment.reversed", payment_id="P1", effective_date="2025-01-02", reason="bounced")
    for message in _published_of(c, "ledger.unapplied_cash_changed"):
        check_published(message)


def test_an_amount_in_exponent_form_is_published_as_a_decimal_string() -> None:
    c = Customer("X-2")
    c.invoice("I1", "1e3", "2025-01-01", "2025-01-31")
    for message in _published_of(c, "ledger.invoice_opened"):
        check_published(message)


def test_a_profile_field_named_origin_does_not_replace_the_ledgers_origin() -> None:
    c = Customer("X-3", origin={"source": "crm"})
    for message in _published_of(c, "ledger.customer_updated"):
        check_published(message)
        assert message["data"]["origin"]["source"] == "erp/eu-1"


def test_the_document_names_every_topic_each_service_consumes() -> None:
    from services.credit.settings import INBOUND_TOPICS as CREDIT
    from services.dunning.settings import INBOUND_TOPICS as DUNNING
    from services.ledger.settings import INBOUND_TOPICS as LEDGER
    from shared.asyncapi import CONSUMERS

    consumed = {(service, topic) for service, topics in (("ledger", LEDGER), ("dunning", DUNNING),
                                                        ("credit", CREDIT)) for topic in topics}
    assert {(service, topic) for topic, services in CONSUMERS.items() for service in services} == consumed
