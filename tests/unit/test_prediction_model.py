"""The payment model and a prediction (issue 20): learnt from settled invoices, it tells a
habitual late payer from a punctual one; an invoice open past its due date is late for certain
and paid on or after the day asked; a settled one is answered with what happened; without a
model the customer's median so far answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np

from services.ledger.predictions.features import Change, InvoiceRecord
from services.ledger.predictions.model import BASELINE, MIN_EXAMPLES, PaymentModel, fit, metrics, training_set
from services.ledger.predictions.predict import ACTUAL, Prediction, predict

START = date(2024, 1, 1)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def book(customers: int, invoices: int) -> dict[str, list[InvoiceRecord]]:
    """Customers L* (a third) pay 20 days late, P* on their due date; every one an invoice a week."""
    found: dict[str, list[InvoiceRecord]] = {}
    for c in range(customers):
        lateness = 20 if c % 3 == 0 else 0  # (a third of them: the typical customer is punctual)
        customer = f"{'L' if lateness else 'P'}{c}"
        records = []
        for i in range(invoices):
            issue = START + timedelta(days=7 * i)
            due = issue + timedelta(days=30)
            paid = due + timedelta(days=lateness)
            amount = Decimal(100 + 10 * (i % 5))
            records.append(InvoiceRecord(f"{customer}-{i}", amount, issue, due, at(issue), (
                Change("settlement", paid, at(paid), open_delta=-amount),)))
        found[customer] = records
    return found


CUTOFF = at(START + timedelta(days=7 * 29 + 1))  # the day after the last invoices were issued
DAY = CUTOFF.date()


def test_the_model_tells_the_late_payer_from_the_punctual_one() -> None:
    records = book(customers=20, invoices=30)
    training = training_set(records, CUTOFF)
    assert len(training.rows) >= MIN_EXAMPLES
    model = fit(training, seed=7)
    figures = metrics(model, training)
    always_on_time = sum(training.days_late) / len(training.days_late)  # its MAE: the mean days late
    assert figures["mae_days"] < always_on_time and figures["brier"] < 0.1
    late, punctual = records["L0"], records["P1"]
    new_late = InvoiceRecord("L0-new", Decimal("120"), DAY, DAY + timedelta(days=30), CUTOFF)
    new_punctual = InvoiceRecord("P1-new", Decimal("120"), DAY, DAY + timedelta(days=30), CUTOFF)
    asked = CUTOFF + timedelta(hours=1)
    for_late = predict(new_late, [*late, new_late], CUTOFF.date(), asked, model, "v1")
    for_punctual = predict(new_punctual, [*punctual, new_punctual], CUTOFF.date(), asked, model, "v1")
    assert for_late is not None and for_punctual is not None
    assert 15 <= for_late.predicted_days_late <= 25 and for_late.probability_late > 0.8
    assert for_punctual.predicted_days_late <= 2 and for_punctual.probability_late < 0.2
    assert for_late.p10_days_late <= for_late.predicted_days_late <= for_late.p90_days_late
    assert for_late.model_version == "v1" and for_late.factors  # what moved it
    # deterministic for a cut-off and a seed: the same training predicts the same
    again = PaymentModel.loads(fit(training_set(records, CUTOFF), seed=7).dumps())
    assert predict(new_late, [*late, new_late], CUTOFF.date(), asked, again, "v1") == for_late


def test_open_past_due_is_late_for_certain_and_paid_on_or_after_the_day_asked() -> None:
    records = book(customers=20, invoices=30)
    model = fit(training_set(records, CUTOFF), seed=7)
    punctual = records["P1"]
    overdue = InvoiceRecord("P1-old", Decimal("120"), CUTOFF.date() - timedelta(days=60),
                            CUTOFF.date() - timedelta(days=30), CUTOFF - timedelta(days=60))
    answer = predict(overdue, [*punctual, overdue], CUTOFF.date(), CUTOFF + timedelta(hours=1), model, "v1")
    assert answer is not None
    assert answer.probability_late == 1.0
    assert answer.predicted_pay_date >= CUTOFF.date() and answer.p10_days_late >= 30


def test_a_settled_invoice_is_answered_with_what_happened_and_the_baseline_without_a_model() -> None:
    records = book(customers=2, invoices=6)
    late = records["L0"]
    settled = late[0]
    answer = predict(settled, late, CUTOFF.date(), CUTOFF, None, "none")
    assert answer is not None
    assert (answer.model_version, answer.predicted_days_late, answer.probability_late) == (ACTUAL, 20, 1.0)
    new = InvoiceRecord("L0-new", Decimal("120"), DAY, DAY + timedelta(days=30), CUTOFF)
    baseline = predict(new, [*late, new], CUTOFF.date(), CUTOFF + timedelta(hours=1), None, "none")
    assert baseline is not None
    figures = (baseline.model_version, baseline.predicted_days_late, baseline.probability_late)
    assert figures == (BASELINE, 20, 1.0)
    assert predict(new, [new], CUTOFF.date() - timedelta(days=1), CUTOFF, None, "none") is None  # not issued
    assert np.isfinite(baseline.p90_days_late)


def test_the_backtest_scores_the_model_and_the_baselines_on_what_was_open() -> None:
    from services.ledger.predictions.backtest import backtest

    records = book(customers=24, invoices=40)
    cutoff = START + timedelta(days=7 * 32)  # (it learns from what was due 90 days before: weeks 0-14)
    (result,) = backtest(records, [cutoff], CUTOFF + timedelta(days=365), seed=7)
    assert result["model_trained"] and result["training_examples"] >= MIN_EXAMPLES
    model, on_time, median = result["model"], result["always_on_time"], result["customer_median"]
    assert model["invoices"] == on_time["invoices"] == median["invoices"] > 0
    assert model["mae_days"] < on_time["mae_days"] and model["brier"] < on_time["brier"]
    assert sum(bucket["invoices"] for bucket in model["calibration"].values()) == model["invoices"]


def test_a_cancelled_or_written_off_invoice_has_no_payment_to_predict() -> None:
    issue, fifty = START, Decimal("50")

    def closed(invoice_id: str, kind: str, after: int) -> InvoiceRecord:
        day = issue + timedelta(days=after)
        return InvoiceRecord(invoice_id, fifty, issue, issue + timedelta(days=30), at(issue),
                             (Change(kind, day, at(day), open_delta=-fifty),))

    cancelled, written_off = closed("C", "cancellation", 3), closed("W", "write_off", 40)
    day = issue + timedelta(days=60)
    assert predict(cancelled, [cancelled], day, at(day), None, "none") is None
    assert predict(written_off, [written_off], day, at(day), None, "none") is None
    before = predict(written_off, [written_off], issue + timedelta(days=35), at(day), None, "none")
    assert before is not None and before.probability_late == 1.0  # open and overdue then


def test_many_customers_at_once_answer_as_each_alone() -> None:
    """``predict_books`` (the forecast, the outlooks, the backtest) gives each customer's invoices
    what ``predict_many`` gives them one customer at a time; without factors when not asked."""
    from services.ledger.predictions.predict import predict_books, predict_many

    records = book(customers=20, invoices=30)
    model = fit(training_set(records, CUTOFF), seed=7)
    day = DAY - timedelta(days=20)  # (some invoices still open then, some overdue)
    asked = CUTOFF + timedelta(hours=1)
    books = [(history, list(range(len(history)))) for history in records.values()]
    for chosen in (model, None):
        together = predict_books(books, day, asked, chosen, "v1", explain=False)
        alone = [predict_many(history, targets, day, asked, chosen, "v1") for history, targets in books]
        assert [[a and a.factors for a in answers] for answers in together] == [
            [a and () for a in answers] for answers in alone]

        def plain(found: list[list[Prediction | None]]) -> list[list[tuple[object, ...] | None]]:
            return [[a and (a.predicted_pay_date, a.p10_days_late, a.p90_days_late, a.probability_late,
                            a.probability_very_late, a.model_version) for a in answers] for answers in found]

        assert plain(together) == plain(alone)
        modelled = [a for answers in alone for a in answers if a is not None and a.model_version != ACTUAL]
        assert len(modelled) > 20 and (chosen is None or any(a.factors for a in modelled))


def test_the_training_set_does_not_depend_on_the_order_customers_were_read() -> None:
    """The rows' order moves the fit (its binning sample, its early-stopping split): a book read
    in another order (recorded in another order) must train the same model."""
    records = book(customers=6, invoices=20)
    backwards = dict(reversed(list(records.items())))
    one, other = training_set(records, CUTOFF), training_set(backwards, CUTOFF)
    assert len(one.rows) > 50
    assert (one.rows, one.days_late, one.at_issue) == (other.rows, other.days_late, other.at_issue)
