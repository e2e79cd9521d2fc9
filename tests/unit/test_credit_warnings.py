"""Early warnings in the credit account (issue 19), worked out by hand: each signal raises one
warning with its evidence, a review clears it once the condition is gone, a rule may hold."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.credit.domain import CreditRules, default_rules
from services.credit.domain.errors import UnknownWarning
from services.credit.domain.securities import security_record
from services.credit.domain.warnings import LatePaymentsRule, LimitUtilisationRule
from shared.ledger_feed import read_fact
from tests.unit.ledger_feed_customer import rebuilt_from
from tests.unit.test_credit_account import Customer

D, M = date.fromisoformat, Decimal


def raised(c: Customer) -> list[dict[str, Any]]:
    return [data for kind, data in c.published if kind == "credit.warning_raised"]


def cleared(c: Customer) -> list[dict[str, Any]]:
    return [data for kind, data in c.published if kind == "credit.warning_cleared"]


def only(rule: Any, **rules: Any) -> CreditRules:
    return default_rules().model_copy(update={"warning_rules": (rule,), **rules})


def test_three_invoices_paid_late_within_90_days() -> None:
    """I1 paid 5 days late (10 Feb), I2 on time, I3 12 days late (1 Mar), I4 1 day late (20 Mar):
    three late within 90 days of 20 March. By 20 June only I4's payment is within 90 days: the
    review clears it."""
    c = Customer(rules=only(LatePaymentsRule()))
    dues = (("I1", "2025-02-05"), ("I2", "2025-02-20"), ("I3", "2025-02-17"), ("I4", "2025-03-19"))
    for invoice, due in dues:
        c.invoice(invoice, "100.00", "2025-01-01", due)
    c.pay("P1", "100.00", "2025-02-10", allocations=[{"invoice_id": "I1", "amount": "100.00"}])
    c.pay("P2", "100.00", "2025-02-20", allocations=[{"invoice_id": "I2", "amount": "100.00"}])
    c.pay("P3", "100.00", "2025-03-01", allocations=[{"invoice_id": "I3", "amount": "100.00"}])
    assert raised(c) == []
    c.pay("P4", "100.00", "2025-03-20", allocations=[{"invoice_id": "I4", "amount": "100.00"}])
    (warning,) = raised(c)
    assert (warning["signal"], warning["severity"], warning["raised_on"], warning["evidence"]["count"]) == (
        "late_payments", "medium", "2025-03-20", 3)
    assert [(i["invoice_id"], i["days_late"]) for i in warning["evidence"]["invoices"]] == [
        ("I1", 5), ("I3", 12), ("I4", 1)]
    c.review("2025-05-01")
    assert cleared(c) == []  # still three within 90 days of 1 May
    c.review("2025-06-20")
    assert [(w["signal"], w["cleared_on"]) for w in cleared(c)] == [("late_payments", "2025-06-20")]
    assert rebuilt_from(c.history).warnings == c.credit.warnings


def test_a_limit_used_past_90_percent_and_a_rule_that_holds() -> None:
    """Limit 1,000.00: 850.00 open is 85%; another 100.00 makes 950.00, 95%: a warning, which
    this rule's hold turns into a hold with reason early_warning. Paid down to 500.00, the next
    review clears the warning and the hold goes."""
    c = Customer(rules=only(LimitUtilisationRule(hold=True)))
    c.set_limit("EUR", "1000.00")
    c.invoice("I1", "850.00", "2025-03-01", "2025-03-31")
    assert raised(c) == []
    c.invoice("I2", "100.00", "2025-03-02", "2025-04-01")
    (warning,) = raised(c)
    assert warning["evidence"] == {"min_percent": "90", "currencies": [
        {"currency": "EUR", "exposure": "950.00", "limit": "1000.00", "percent": "95.00"}]}
    assert c.holds() == [("automatic", ["early_warning"], "auto")]
    assert c.check("O1", "10.00", "2025-03-03")["reasons"] == ["early_warning"]
    c.pay("P1", "450.00", "2025-03-05")
    assert c.holds() == [("automatic", ["early_warning"], "auto")]  # cleared only by a review
    c.review("2025-03-06")
    assert [w["signal"] for w in cleared(c)] == ["limit_utilisation"] and c.holds() == []


def test_a_downgrade_a_worse_grade_a_broken_promise_and_an_ending_security() -> None:
    c = Customer()
    rules = c.rules

    def fact(event_type: str, message_id: str, **data: Any) -> None:
        c.observe(read_fact(event_type, {"customer_id": "C1", **data}, message_id, source="bureau"))
        c.collect()

    fact("rating.reported", "r1", provider="bureau", score="61", grade="BB", probability_of_default="0.02",
         report_date="2025-02-01")
    c.review("2025-02-02")
    assert raised(c) == []
    fact("rating.reported", "r2", provider="bureau", score="55", grade="B", probability_of_default="0.08",
         report_date="2025-03-01")
    c.review("2025-03-02")
    (downgrade,) = raised(c)
    assert downgrade["signal"] == "rating_downgrade"
    assert downgrade["evidence"]["downgrades"][0]["previous"]["grade"] == "BB"
    assert downgrade["evidence"]["downgrades"][0]["latest"]["grade"] == "B"
    fact("dunning.resumed", "dunning:x:7:0", promise_id="PR1", currency="EUR", amount="100.00",
         made_on="2025-03-01", promised_date="2025-03-10", paused_until="2025-03-13", invoice_ids=["I1"],
         status="broken", reason="promise_broken")
    fact("dunning.resumed", "dunning:x:7:0", promise_id="PR1", currency="EUR", amount="100.00",
         made_on="2025-03-01", promised_date="2025-03-10", paused_until="2025-03-13", invoice_ids=["I1"],
         status="broken", reason="promise_broken")  # again: once
    broken = [w for w in raised(c) if w["signal"] == "broken_promise"]
    assert [(w["severity"], w["raised_on"], w["evidence"]["broken"]) for w in broken] == [
        ("high", "2025-03-14", [{"kind": "promise", "id": "PR1", "broken_on": "2025-03-14"}])]
    c.credit.register_security(security_record(
        security_id="G1", kind="bank_guarantee", currency="EUR", amount=M("500.00"), coverage_percent=None,
        valid_from=D("2025-01-01"), valid_until=D("2025-04-10"), issuer=None, reference=None, note=None),
        "carol", D("2025-03-15"), rules)
    c.collect()
    ending = [w for w in raised(c) if w["signal"] == "security_expiring"]
    assert [(w["severity"], w["evidence"]["securities"][0]["days_left"]) for w in ending] == [("low", 26)]
    warning_id = ending[0]["warning_id"]
    acknowledged = c.credit.acknowledge_warning(warning_id, "renewal asked of the bank", "dave",
                                                D("2025-03-16"))
    assert acknowledged["acknowledgements"] == [
        {"note": "renewal asked of the bank", "by": "dave", "acknowledged_on": "2025-03-16"}]
    with pytest.raises(UnknownWarning):
        c.credit.acknowledge_warning("nope", "x", "dave", D("2025-03-16"))
    # one open warning per signal: a second broken plan adds none
    fact("dunning.plan_broken", "dunning:x:9:0", plan_id="PL1", currency="EUR", status="broken",
         invoice_ids=["I1"], instalments=[], total="100.00", paid="0.00", requested_on="2025-03-01",
         reason="cash", requested_by="x", decided_on="2025-03-02", decided_by="y", rejection_reason=None,
         closed_on="2025-03-20", broken_instalment=1)
    assert len([w for w in raised(c) if w["signal"] == "broken_promise"]) == 1
    assert c.credit.broken["plan:PL1"]["broken_on"] == "2025-03-20"
    # the grade got worse at some review: risk_grade_worse
    c.invoice("I9", "100.00", "2025-01-01", "2025-01-31")
    c.review("2025-04-20")
    assert "risk_grade_worse" in {w["signal"] for w in raised(c)}
    assert rebuilt_from(c.history).warnings == c.credit.warnings
