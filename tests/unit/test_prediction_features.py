"""The payment predictions' feature builder (issue 20): it sees only what was recorded by its
instant and effective by its date; a fact recorded later, even one dated earlier, changes
nothing. Figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.predictions.features import (
    FEATURES,
    Change,
    InvoiceRecord,
    features,
    features_many,
    known,
)

D, M = date.fromisoformat, Decimal


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def paid(invoice_id: str, amount: str, issue: str, due: str, paid_on: str, *, recorded: str | None = None
         ) -> InvoiceRecord:
    """Issued (recorded on its issue date) and paid in full on ``paid_on`` (recorded that day,
    or on ``recorded``)."""
    return InvoiceRecord(invoice_id, M(amount), D(issue), D(due), at(issue), (
        Change("settlement", D(paid_on), at(recorded or paid_on), open_delta=-M(amount)),))


HISTORY = [
    paid("H1", "100.00", "2025-01-01", "2025-01-31", "2025-01-31"),  # on time
    paid("H2", "200.00", "2025-01-10", "2025-02-09", "2025-02-19"),  # 10 days late
    paid("H3", "300.00", "2025-02-01", "2025-03-03", "2025-03-23"),  # 20 days late
]
TARGET = InvoiceRecord("T", M("400.00"), D("2025-03-01"), D("2025-03-31"), at("2025-03-01"),
                       has_cash_discount=True)


def test_the_features_of_an_invoice_by_hand() -> None:
    found = features(TARGET, [*HISTORY, TARGET], D("2025-03-25"), at("2025-03-25"))
    assert set(found) == set(FEATURES)
    assert found["history_settled"] == 3
    assert found["history_late_share"] == pytest.approx(2 / 3)
    assert found["history_median_days_late"] == 10
    assert found["recent_mean_days_late"] == 10  # all three within 90 days: (0 + 10 + 20) / 3
    assert found["history_max_days_late"] == 20
    assert found["amount_vs_usual"] == 2  # 400 against the median of 100, 200, 300
    assert (found["terms_days"], found["days_to_due"], found["has_cash_discount"]) == (30, 6, 1)
    assert (found["due_weekday"], found["due_month_end"]) == (0, 1)  # 31 March 2025: a Monday


def test_a_fact_recorded_later_changes_nothing_even_dated_earlier() -> None:
    """H3's payment took effect on 23 March but was recorded only on 2 April: known at 25 March
    H3 is open and 22 days overdue (an overdue invoice, not a late payment)."""
    late_recorded = paid("H3", "300.00", "2025-02-01", "2025-03-03", "2025-03-23", recorded="2025-04-02")
    history = [*HISTORY[:2], late_recorded]
    before = features(TARGET, history, D("2025-03-25"), at("2025-03-25"))
    figures = (before["history_settled"], before["history_max_days_late"], before["overdue_invoices"])
    assert figures == (2, 10, 1)
    assert before["overdue_amount_ratio"] == pytest.approx(300 / 400)
    # the same question asked after the payment was recorded sees it
    after = features(TARGET, history, D("2025-03-25"), at("2025-04-02", 13))
    assert (after["history_settled"], after["history_max_days_late"], after["overdue_invoices"]) == (3, 20, 0)
    # and an invoice recorded after the instant, or issued after the date, is no history at all
    recorded_later = InvoiceRecord("H4", M("999.00"), D("2025-03-20"), D("2025-03-21"), at("2025-03-26"))
    issued_later = InvoiceRecord("H5", M("999.00"), D("2025-03-26"), D("2025-03-27"), at("2025-03-24"))
    assert features(TARGET, [*HISTORY, recorded_later, issued_later], D("2025-03-25"), at("2025-03-25")) == (
        features(TARGET, HISTORY, D("2025-03-25"), at("2025-03-25")))


def test_what_is_not_paid_teaches_no_days_late() -> None:
    cancelled = InvoiceRecord("C", M("50.00"), D("2025-01-01"), D("2025-01-31"), at("2025-01-01"), (
        Change("cancellation", D("2025-02-10"), at("2025-02-10"), open_delta=-M("50.00")),))
    written_off = InvoiceRecord("W", M("50.00"), D("2025-01-01"), D("2025-01-31"), at("2025-01-01"), (
        Change("settlement", D("2025-02-01"), at("2025-02-01"), open_delta=-M("20.00")),
        Change("write_off", D("2025-03-01"), at("2025-03-01"), open_delta=-M("30.00"))))
    reopened = InvoiceRecord("R", M("80.00"), D("2025-01-01"), D("2025-01-31"), at("2025-01-01"), (
        Change("settlement", D("2025-01-20"), at("2025-01-20"), open_delta=-M("80.00")),
        Change("settlement", D("2025-02-05"), at("2025-02-05"), open_delta=M("80.00")),  # bounced
        Change("settlement", D("2025-02-15"), at("2025-02-15"), open_delta=-M("80.00"))))
    day, instant = D("2025-03-25"), at("2025-03-25")
    assert [known(r, day, instant).settled_on for r in (cancelled, written_off)] == [None, None]  # type: ignore[union-attr]
    assert known(reopened, day, instant).days_late == 15  # type: ignore[union-attr]
    assert known(reopened, D("2025-02-10"), instant).settled_on is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not issued"):
        features(TARGET, [], D("2025-02-28"), instant)


changes = st.builds(
    lambda kind, day, delay, delta: Change(kind, D("2025-01-01") + timedelta(days=day),
                                           at("2025-01-01") + timedelta(days=day + delay),
                                           open_delta=M(delta).scaleb(-2)),
    st.sampled_from(["settlement", "adjustment", "dispute"]), st.integers(0, 120), st.integers(0, 60),
    st.integers(-30_000, 10_000))


@st.composite
def records(draw: st.DrawFn, invoice_id: str) -> InvoiceRecord:
    issue = D("2025-01-01") + timedelta(days=draw(st.integers(0, 90)))
    return InvoiceRecord(invoice_id, M(draw(st.integers(1, 100_000))).scaleb(-2), issue,
                         issue + timedelta(days=draw(st.integers(0, 60))),
                         at(issue.isoformat()) + timedelta(days=draw(st.integers(0, 10))),
                         tuple(draw(st.lists(changes, max_size=4))))


@settings(max_examples=200, deadline=None)
@given(history=st.lists(st.integers(0, 10**6).flatmap(lambda n: records(f"H{n}")), max_size=6,
                        unique_by=lambda r: r.invoice_id),
       extra=st.lists(changes, min_size=1, max_size=3), victim=st.integers(0, 5), day=st.integers(95, 160))
def test_nothing_recorded_after_the_instant_moves_a_feature(history: list[InvoiceRecord], extra: list[Change],
                                                            victim: int, day: int) -> None:
    """Add to any invoice changes recorded after the instant (with any effective date): every
    feature stays as it was."""
    as_of = D("2025-01-01") + timedelta(days=day)
    instant = at(as_of.isoformat())
    target = InvoiceRecord("T", M("100.00"), D("2025-03-01"), D("2025-03-31"), at("2025-03-01"))
    before = features(target, history, as_of, instant)
    if history:
        changed = history[victim % len(history)]
        later = tuple(Change(c.kind, c.effective, instant + timedelta(seconds=1 + i), c.open_delta)
                      for i, c in enumerate(extra))
        history = [r if r is not changed else InvoiceRecord(
            r.invoice_id, r.amount, r.issue_date, r.due_date, r.recorded, r.changes + later) for r in history]
    assert features(target, history, as_of, instant) == before


all_changes = st.builds(
    lambda kind, day, delay, delta, disputed: Change(kind, D("2025-01-01") + timedelta(days=day),
                                                     at("2025-01-01") + timedelta(days=day + delay),
                                                     open_delta=M(delta).scaleb(-2),
                                                     disputed_delta=M(disputed).scaleb(-2)),
    st.sampled_from(["settlement", "settlement", "adjustment", "dispute", "cancellation", "write_off"]),
    st.integers(0, 150), st.integers(0, 60), st.integers(-30_000, 10_000), st.integers(-5_000, 5_000))


@st.composite
def customer_book(draw: st.DrawFn) -> list[InvoiceRecord]:
    found = []
    for number in range(draw(st.integers(1, 14))):
        issue = D("2025-01-01") + timedelta(days=draw(st.integers(0, 120)))
        amount = M(draw(st.sampled_from([100, 250, 100_000, draw(st.integers(1, 100_000))]))).scaleb(-2)
        found.append(InvoiceRecord(
            f"I{number}", amount, issue, issue + timedelta(days=draw(st.integers(0, 60))),
            at(issue.isoformat()) + timedelta(days=draw(st.integers(0, 10))),
            tuple(draw(st.lists(all_changes, max_size=4))), has_cash_discount=draw(st.booleans())))
    return found


@settings(max_examples=300, deadline=None)
@given(book=customer_book(), known_day=st.integers(0, 220),
       questions=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 200)), min_size=1, max_size=20))
def test_many_questions_at_once_answer_as_one_at_a_time(book: list[InvoiceRecord], known_day: int,
                                                        questions: list[tuple[int, int]]) -> None:
    """``features_many`` is ``features`` for every (invoice, date) question, whatever the order
    asked, the changes (reopened, cancelled, written off, recorded late) and ties of amounts."""
    instant = at("2025-01-01") + timedelta(days=known_day, hours=3)
    asked = []
    for index, day in questions:
        record = book[index % len(book)]
        as_of = D("2025-01-01") + timedelta(days=day)
        if record.issue_date <= as_of and record.recorded <= instant:
            asked.append((index % len(book), as_of))
    expected = [features(book[i], book, day, instant) for i, day in asked]
    assert features_many(book, instant, asked) == expected


@given(book=customer_book(), known_day=st.integers(0, 220), day=st.integers(0, 200),
       targets=st.lists(st.integers(0, 13), min_size=1, max_size=14))
def test_the_questions_of_one_day_answer_as_one_at_a_time(book: list[InvoiceRecord], known_day: int, day: int,
                                                          targets: list[int]) -> None:
    """One day's questions (a prediction's, a customer's open invoices') take the sweep to the day
    at once (``_Sweep(..., at=day)``) rather than change by change: the same figures as ``features``."""
    instant = at("2025-01-01") + timedelta(days=known_day, hours=3)
    as_of = D("2025-01-01") + timedelta(days=day)
    asked = [(i % len(book), as_of) for i in targets
             if book[i % len(book)].issue_date <= as_of and book[i % len(book)].recorded <= instant]
    expected = [features(book[i], book, as_of, instant) for i, _ in asked]
    assert features_many(book, instant, asked) == expected
