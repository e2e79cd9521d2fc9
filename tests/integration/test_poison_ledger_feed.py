"""No single message on ``ar.ledger.events`` may stop dunning or credit.

Only the ledger should publish there, but anything that reaches the topic is a message the
two followers must get past: facts no ledger would publish (amounts beyond every read model,
dates past the calendar's end, deep or huge profiles, ERP types, no key) are dead-lettered
by both, naming the field, and the ledger's own facts about each case's follow-up invoice,
published behind them on the same partition, reach dunning and credit. One stream per
database through a module of its own (a follower stopped here stops nothing elsewhere);
the machinery is in ``poison_harness.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.poison_harness import (
    LEDGER_EVENTS,
    MB,
    NO_KEY,
    Case,
    Message,
    Outcome,
    Stack,
    assert_ready,
    check_case,
    check_settled,
    customer_of,
    dead,
    deep_json,
    either,
    encode,
    invoice,
    ledger_fact,
    run_stream,
    selected_cases,
)


def build_cases() -> list[Case]:
    cases: list[Case] = []

    def case(name: str, *messages: Message, **extra: Any) -> None:
        cases.append(Case(name, customer_of(name), messages, **extra))

    for name, changes, mentions in [
        ("ledger-amount-1e30", {"amount": "1e30"}, ("data.amount",)),
        ("ledger-open-amount-1e30", {"open_amount": "1e30"}, ("data.invoices",)),
        ("ledger-due-date-9999", {"due_date": "9999-12-31"}, ("data.due_date",)),
        ("ledger-amount-3-decimals", {"amount": "400.001"}, ("data.amount",)),
    ]:
        fact = ledger_fact(customer_of(name), "ledger.invoice_opened", **changes)
        case(name, dead(LEDGER_EVENTS, fact, *mentions))
    cust = customer_of("ledger-unapplied-change-1e30")
    case("ledger-unapplied-change-1e30", dead(LEDGER_EVENTS, ledger_fact(
        cust, "ledger.unapplied_cash_changed", change="-1e30"), "data.change"))
    cust = customer_of("ledger-deep-contacts-1000")  # orjson reads it, the event store cannot write it
    case("ledger-deep-contacts-1000", dead(LEDGER_EVENTS, deep_json(ledger_fact(
        cust, "ledger.customer_updated"), ("data", "contacts"), 1000), "data.contacts", "nest"))
    cust = customer_of("ledger-contacts-2mb")
    case("ledger-contacts-2mb", either(LEDGER_EVENTS, encode(ledger_fact(
        cust, "ledger.customer_updated", contacts=[{"note": "x" * (2 * MB)}])), "message", "data.contacts"))
    cust = customer_of("ledger-erp-type")
    case("ledger-erp-type", dead(LEDGER_EVENTS, invoice(cust, "LX"), "type"))
    cust = customer_of("ledger-no-key")
    case("ledger-no-key", dead(LEDGER_EVENTS, ledger_fact(cust, "ledger.invoice_opened"), "key", key=NO_KEY))
    return cases


CASES = build_cases()


@pytest.fixture(scope="module")
async def outcome(three_services: Stack, request: pytest.FixtureRequest) -> Outcome:
    return await run_stream(three_services, selected_cases(request, CASES))


@pytest.mark.parametrize("name", [case.name for case in CASES])
async def test_foreign_fact_is_dead_lettered_and_the_ledgers_own_follow(outcome: Outcome, name: str) -> None:
    check_case(outcome, name)


async def test_the_stream_settles_within_seconds_and_the_services_stay_ready(outcome: Outcome) -> None:
    check_settled(outcome)
    await assert_ready(outcome.stack)
