"""Unit tests of a customer's assignment to a collector: the rules, a manual assignment,
credit's risk grades (redeliveries and all), and rebuilding it all from the events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.dunning.domain.collectors import AssignmentRule, Collector, CollectorBook, UnknownCollector
from shared.ledger_feed import read_fact
from tests.unit.ledger_feed_customer import rebuilt_from
from tests.unit.test_dunning_account import Customer

RULES = [AssignmentRule.model_validate(rule) for rule in (
    {"collector_id": "risky", "when": {"risk_grade": ["D", "E"]}},
    {"collector_id": "big", "when": {"min_open_amount": "1000.00", "country": "GB"}},
    {"collector_id": "north", "when": {"attribute": {"name": "region", "value": "north"}}},
)]


def graded(customer: Customer, grade: str | None, version: int) -> bool:
    fact = read_fact("credit.risk_grade_changed", {
        "customer_id": customer.dunning.customer_id, "grade": grade, "previous_grade": None,
        "score": "0", "factors": [], "as_of": "2025-01-01"},
        f"credit:00000000-0000-0000-0000-000000000001:{version}:0", source="receivables/credit")
    changed = customer.dunning.observe(fact)
    customer.collect()
    return changed


def assigned(customer: Customer) -> tuple[Any, ...]:
    account = customer.dunning
    account.assign_by_rules(RULES, 3)
    customer.collect()
    return account.collector_id, account.assigned_by, account.assignment and account.assignment["rule"]


def test_the_first_matching_rule_assigns_and_a_change_of_facts_moves_the_customer() -> None:
    c = Customer()  # country GB
    assert assigned(c) == (None, None, None)
    c.invoice("I1", "600.00", "2025-01-01", "2025-01-31")
    assert assigned(c) == (None, None, None)  # 600.00 open: below the "big" rule's 1000.00
    c.invoice("I2", "400.00", "2025-01-02", "2025-02-01")
    assert assigned(c) == ("big", "rule", 1)
    assert graded(c, "E", 1)
    assert assigned(c) == ("risky", "rule", 0)  # an earlier rule now matches
    assert not graded(c, "E", 1)  # redelivered: nothing
    assert not graded(c, "A", 1)  # (an older message again, whatever it says)
    assert graded(c, "B", 2) and assigned(c) == ("big", "rule", 1)
    c.pay("P1", "500.00", "2025-02-10")
    assert assigned(c) == (None, None, None)  # no rule matches any more
    events = [type(e).__name__ for e in c.history]
    assert events.count("CollectorAssigned") == 4 and events.count("RiskGraded") == 2


def test_an_attribute_of_any_invoice_matches() -> None:
    c = Customer(country="FR")
    c.observe(read_fact("ledger.invoice_opened", {
        "customer_id": "C1", "invoice_id": "I9", "currency": "EUR", "amount": "10.00",
        "issue_date": "2025-01-01", "due_date": "2025-01-31", "attributes": {"region": "north"},
        "invoices": [{"invoice_id": "I9", "open_amount": "10.00", "status": "open"}]},
        "ledger:00000000-0000-0000-0000-000000000009:99:0"))
    c.collect()
    assert assigned(c) == ("north", "rule", 2)


def test_a_manual_assignment_wins_over_the_rules_until_released() -> None:
    c = Customer()
    c.invoice("I1", "2000.00", "2025-01-01", "2025-01-31")
    assert assigned(c) == ("big", "rule", 1)
    assert c.dunning.assign_by_hand("alice", actor="ops-bob")
    assert not c.dunning.assign_by_hand("alice", actor="ops-bob")  # the same again: nothing
    assert graded(c, "E", 1)
    assert assigned(c) == ("alice", "manual", None)
    assert c.dunning.release_by_hand("ops-bob", RULES, 3)
    c.collect()
    assert (c.dunning.collector_id, c.dunning.assigned_by) == ("risky", "rule")
    assert not c.dunning.release_by_hand("ops-bob", RULES, 3)  # nothing manual to release
    assignments = [(e.collector_id, e.by, e.actor) for e in c.history
                   if type(e).__name__ == "CollectorAssigned"]
    assert assignments == [
        ("big", "rule", None), ("alice", "manual", "ops-bob"), ("risky", "rule", "ops-bob")]
    rebuilt = rebuilt_from(c.history)
    assert (rebuilt.assignment, rebuilt.risk_grade, rebuilt.credit_sequence) == (
        c.dunning.assignment, c.dunning.risk_grade, c.dunning.credit_sequence)
    assert rebuilt.view() == c.dunning.view()


def test_the_book_keeps_collectors_and_versioned_rules_naming_known_collectors_only() -> None:
    book = CollectorBook()
    assert book.put_collector(Collector(collector_id="big", name="Big Accounts"))
    assert not book.put_collector(Collector(collector_id="big", name="Big Accounts"))
    with pytest.raises(UnknownCollector, match=r"rule 0 .* 'risky'"):
        book.put_rules(RULES)
    for collector_id in ("risky", "north"):
        book.put_collector(Collector(collector_id=collector_id, name=collector_id.title()))
    assert book.put_rules(RULES) and book.rules_version == 1
    assert not book.put_rules(RULES) and book.rules_version == 1
    assert book.rules == RULES
    assert book.put_collector(Collector(collector_id="risky", name="Risky", active=False))
    assert [r.collector_id for r in book.active_rules] == ["big", "north"]
    with pytest.raises(UnknownCollector, match="not active"):
        book.require("risky")
    assert book.put_rules(RULES[:1]) and book.rules_version == 2
    with pytest.raises(ValidationError, match="min_open_amount"):
        AssignmentRule.model_validate({"collector_id": "big", "when": {"min_open_amount": 1000.5}})
    assert RULES[1].when.min_open_amount == Decimal("1000.00")
