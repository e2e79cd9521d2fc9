"""Securities in the credit account (issue 19), amounts worked out by hand: cover in a check,
expiry on its date, credit insurance's share, records without cover, draws and releases; and
a property test of the cover."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.credit.domain import CreditAccount, InvalidAmount, InvalidCommand, default_rules
from services.credit.domain.errors import ConflictingSecurity, UnknownSecurity
from services.credit.domain.securities import COVERING, KINDS, Security, cover, security_record
from tests.unit.ledger_feed_customer import rebuilt_from
from tests.unit.test_credit_account import Customer

M, D = Decimal, date.fromisoformat


def security(security_id: str, kind: str, *, currency: str | None = "EUR", amount: str | None = None,
             coverage_percent: str | None = None, valid_from: str = "2025-01-01",
             valid_until: str | None = None) -> dict[str, Any]:
    return security_record(security_id=security_id, kind=kind, currency=currency,
                           amount=M(amount) if amount is not None else None,
                           coverage_percent=M(coverage_percent) if coverage_percent is not None else None,
                           valid_from=D(valid_from), valid_until=D(valid_until) if valid_until else None,
                           issuer=None, reference=None, note=None)


def register(c: Customer, record: dict[str, Any], on: str) -> dict[str, Any]:
    view = c.credit.register_security(record, "carol", D(on), c.rules)
    c.collect()
    return view


def answer(check: dict[str, Any]) -> tuple[Any, ...]:
    return (check["decision"], check["reasons"], check["secured_amount"], check["available_credit"])


def test_a_guarantee_turns_a_refused_check_into_an_approval_until_it_expires() -> None:
    """Limit 10,000.00; 9,000.00 open. An order of 2,000.00 is over (review). A bank guarantee
    of 5,000.00 for March covers the exposure with the order up to 5,000.00: approved, 6,000.00
    available. On 1 April it no longer counts: the next order is over again, and the review of
    that day holds the customer (11,000.00 exposed, nothing secured)."""
    c = Customer()
    c.set_limit("EUR", "10000.00")
    c.invoice("I1", "9000.00", "2025-02-01", "2025-04-30")
    assert answer(c.check("O1", "2000.00", "2025-03-01")) == ("review", ["limit_exceeded"], "0.00", "1000.00")
    register(c, security("G1", "bank_guarantee", amount="5000.00", valid_from="2025-03-01",
                         valid_until="2025-03-31"), on="2025-03-01")
    assert answer(c.check("O2", "2000.00", "2025-03-10")) == ("approve", [], "5000.00", "6000.00")
    c.review("2025-03-02")
    expiring = [data for kind, data in c.published if kind == "credit.security_expiring"]
    assert [(e["security_id"], e["valid_until"], e["days_left"], e["amount"]) for e in expiring] == [
        ("G1", "2025-03-31", 29, "5000.00")]
    c.review("2025-03-31")
    assert c.holds() == []  # 11,000.00 exposed, 5,000.00 secured
    assert answer(c.check("O3", "2000.00", "2025-04-01")) == (
        "review", ["limit_exceeded"], "0.00", "-1000.00")
    c.review("2025-04-01")
    assert c.holds() == [("automatic", ["limit_exceeded"], "auto")]
    assert [kind for kind, _ in c.published].count("credit.security_expiring") == 1  # announced once
    (eur,) = c.credit.view(cover_on=D("2025-03-15"))["positions"]
    assert (eur["exposure"], eur["secured_amount"], eur["unsecured_exposure"]) == (
        "11000.00", "5000.00", "6000.00")
    assert rebuilt_from(c.history).view(cover_on=D("2025-03-15")) == c.credit.view(cover_on=D("2025-03-15"))


def test_credit_insurance_covers_its_share_of_the_exposure_up_to_the_insured_amount() -> None:
    """Limit 5,000.00; 4,000.00 open. Insurance of 75% up to 6,000.00: with an order of
    2,000.00 the exposure is 6,000.00, of which 4,500.00 insured: 1,500.00 unsecured, approved.
    A second policy of 10% up to 100.00 adds 100.00 (10% is 620.00 of what is then 6,200.00)."""
    c = Customer()
    c.set_limit("EUR", "5000.00")
    c.invoice("I1", "4000.00", "2025-02-01", "2025-04-30")
    register(c, security("CI1", "credit_insurance", amount="6000.00", coverage_percent="75"), on="2025-02-01")
    assert answer(c.check("O1", "2000.00", "2025-02-02")) == ("approve", [], "4500.00", "5500.00")
    register(c, security("CI2", "credit_insurance", amount="100.00", coverage_percent="10"), on="2025-02-02")
    # 6,000.00 exposed + 200.00: 75% is 4,650.00, 10% is 620.00 capped at 100.00
    assert answer(c.check("O2", "200.00", "2025-02-03")) == ("approve", [], "4750.00", "3750.00")


def test_insurance_pays_no_fraction_of_a_cent() -> None:
    insured = Security.from_record(
        security("CI", "credit_insurance", amount="100.00", coverage_percent="33.33"))
    assert insured.cover(M("10.01"), D("2025-02-01")) == M("3.33")  # 3.336333: rounded down
    assert insured.cover(M("100.00"), D("2025-02-01")) == M("33.33")


def test_a_power_of_attorney_or_a_contract_covers_nothing() -> None:
    c = Customer()
    c.set_limit("EUR", "1000.00")
    c.invoice("I1", "900.00", "2025-02-01", "2025-04-30")
    register(c, security("PA1", "power_of_attorney", currency=None), on="2025-02-01")
    register(c, security("CT1", "contract", amount="5000.00"), on="2025-02-01")  # kept as a document
    assert answer(c.check("O1", "200.00", "2025-02-02")) == ("review", ["limit_exceeded"], "0.00", "100.00")
    statuses = {s["security_id"]: (s["status"], s["counts"]) for s in c.credit.view(cover_on=D("2025-02-02"))[
        "securities"]}
    assert statuses == {"CT1": ("document", False), "PA1": ("document", False)}


def test_a_draw_lowers_the_cover_from_its_date_and_a_release_ends_it() -> None:
    c = Customer()
    c.invoice("I1", "9000.00", "2025-02-01", "2025-04-30")
    register(c, security("G1", "bank_guarantee", amount="5000.00"), on="2025-02-01")
    c.credit.draw_security("G1", M("2000.00"), D("2025-03-05"), "dave", c.rules)
    assert c.credit.cover("EUR", M("9000.00"), D("2025-03-04")) == M("5000.00")
    assert c.credit.cover("EUR", M("9000.00"), D("2025-03-05")) == M("3000.00")
    with pytest.raises(InvalidAmount, match=r"more than the 3000\.00 EUR left"):
        c.credit.draw_security("G1", M("3000.01"), D("2025-03-06"), "dave", c.rules)
    c.credit.release_security("G1", "returned to the bank", D("2025-03-20"), "dave", c.rules)
    assert c.credit.cover("EUR", M("9000.00"), D("2025-03-19")) == M("3000.00")
    assert c.credit.cover("EUR", M("9000.00"), D("2025-03-20")) == M("0.00")
    with pytest.raises(ConflictingSecurity, match=r"was released on 2025-03-20"):
        c.credit.release_security("G1", "again", D("2025-03-21"), "dave", c.rules)
    with pytest.raises(UnknownSecurity):
        c.credit.draw_security("G9", M("1.00"), D("2025-03-06"), "dave", c.rules)
    # the cover never exceeds the exposure
    register(c, security("G2", "parent_guarantee", amount="50000.00"), on="2025-03-21")
    assert c.credit.cover("EUR", M("9000.00"), D("2025-03-21")) == M("9000.00")


def test_registering_again_and_what_is_refused() -> None:
    c = Customer()
    first = register(c, security("G1", "bank_guarantee", amount="5000.00"), on="2025-02-01")
    events = len(c.history)
    assert register(c, security("G1", "bank_guarantee", amount="5000.00"), on="2025-02-02") == first
    assert len(c.history) == events  # the same registration records nothing
    with pytest.raises(ConflictingSecurity):
        register(c, security("G1", "bank_guarantee", amount="6000.00"), on="2025-02-02")
    refusals = {
        "coverage_percent": dict(kind="credit_insurance", amount="100.00"),
        "amount": dict(kind="bank_guarantee"),
        "valid_until": dict(kind="collateral", amount="1.00", valid_until="2024-12-31"),
        "kind": dict(kind="pledge", amount="1.00"),
    }
    for field, asked in refusals.items():
        with pytest.raises(InvalidCommand) as refused:
            security("X", **asked)  # type: ignore[arg-type]
        assert refused.value.field == field
    with pytest.raises(InvalidCommand, match="only credit insurance"):
        security("X", "bank_guarantee", amount="1.00", coverage_percent="50")


# ------------------------------------------------------------------ property

DAY0 = D("2025-01-01")
days = st.integers(0, 120).map(lambda n: DAY0 + timedelta(days=n))
cents = st.integers(1, 2_000_000).map(lambda n: M(n).scaleb(-2))


@st.composite
def securities(draw: st.DrawFn) -> list[Security]:
    found = []
    for index in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(KINDS))
        start = draw(days)
        end = draw(st.one_of(st.none(), st.integers(0, 90).map(lambda n, s=start: s + timedelta(days=n))))
        item = Security.from_record(security(
            f"S{index}", kind, amount=str(draw(cents)) if kind in COVERING or draw(st.booleans()) else None,
            coverage_percent=str(draw(st.integers(1, 100))) if kind == "credit_insurance" else None,
            valid_from=start.isoformat(), valid_until=end.isoformat() if end else None,
            currency=draw(st.sampled_from(["EUR", "EUR", "USD"]))))
        if item.amount is not None and draw(st.booleans()):
            item.draws.append((draw(days), min(item.amount, draw(cents))))
        if draw(st.booleans()):
            item.released_on = draw(days)
        found.append(item)
    return found


@settings(max_examples=300, deadline=None)
@given(found=securities(), exposure=cents, day=days)
def test_cover_never_exceeds_the_exposure_nor_the_securities(found: list[Security], exposure: Decimal,
                                                              day: date) -> None:
    covered = cover(found, "EUR", exposure, day)
    assert ZERO_EUR <= covered <= exposure
    assert covered <= sum((s.amount for s in found if s.currency == "EUR" and s.amount is not None), ZERO_EUR)


ZERO_EUR = M("0.00")


@settings(max_examples=150, deadline=None)
@given(found=securities(), extra=securities(), open_amount=cents, order=cents, limit=cents, day=days)
def test_the_check_is_monotone_in_cover(found: list[Security], extra: list[Security], open_amount: Decimal,
                                        order: Decimal, limit: Decimal, day: date) -> None:
    """More securities never turn an approval into a review, nor lower what is secured."""

    def checked(items: list[Security]) -> dict[str, Any]:
        c = Customer()
        c.set_limit("EUR", str(limit))
        c.invoice("I1", str(open_amount), "2024-12-01", "2025-12-31")
        c.credit.securities = {s.security_id: s for s in items}
        return c.credit.check("O1", order, "EUR", day, default_rules())

    fewer = checked(found)
    more = checked(found + [Security.from_record({**s.record, "security_id": "X" + s.security_id})
                            for s in extra])
    assert M(more["secured_amount"]) >= M(fewer["secured_amount"])
    if fewer["decision"] == "approve":
        assert more["decision"] == "approve"


def test_an_account_rebuilt_from_its_events_has_the_same_securities() -> None:
    account = CreditAccount("C9")
    account.register_security(security("G1", "bank_guarantee", amount="10.00"), "carol", D("2025-01-01"))
    account.draw_security("G1", M("4.00"), D("2025-01-02"), "carol")
    account.release_security("G1", "done", D("2025-01-03"), "carol")
    history = list(account.collect_events())
    rebuilt = rebuilt_from(history)
    assert rebuilt.securities["G1"].view(D("2025-01-02")) == account.securities["G1"].view(D("2025-01-02"))



def test_a_change_dated_before_the_last_review_is_judged_on_the_review_s_day() -> None:
    """Limit 10,000.00, 12,000.00 open: held. A guarantee of 5,000.00 from 10 March releases the
    hold, and the review of 10 March agrees. A payment of 100.00 dated 9 March then lowers the
    exposure: judged on 10 March (the review's day), the guarantee still counts, no hold."""
    c = Customer()
    c.set_limit("EUR", "10000.00")
    c.invoice("I1", "12000.00", "2025-02-01", "2025-04-30")
    assert c.holds() == [("automatic", ["limit_exceeded"], "auto")]
    register(c, security("G1", "bank_guarantee", amount="5000.00", valid_from="2025-03-10"), on="2025-03-10")
    assert c.holds() == []
    c.review("2025-03-10")
    c.pay("P1", "100.00", "2025-03-09")
    assert c.holds() == []


def test_a_limit_set_today_counts_today_s_securities() -> None:
    """No review yet: the limit is judged on the day it is set, with the guarantee."""
    c = Customer()
    c.invoice("I1", "12000.00", "2025-02-01", "2025-04-30")
    register(c, security("G1", "bank_guarantee", amount="5000.00", valid_from="2025-03-01"), on="2025-03-01")
    c.credit.set_limit("EUR", M("10000.00"), "carol", rules=c.rules, on=D("2025-03-02"))
    c.collect()
    assert c.holds() == []
