"""Payment predictions over REST: per invoice and per customer (``ledger:read``), and the model
versions (``ops:replay``): ``POST /admin/models`` trains one from what was recorded so far,
``GET /admin/models`` lists them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from services.ledger.api.params import AsOf, KnownAt, as_utc
from services.ledger.predictions.features import InvoiceRecord
from services.ledger.predictions.features import known as known_state
from services.ledger.predictions.forecast import forecast
from services.ledger.predictions.history import RecordsCache, customer_records
from services.ledger.predictions.model import BASELINE
from services.ledger.predictions.predict import ACTUAL, Prediction, predict_books, predict_many
from services.ledger.predictions.store import load_version, model_at, newest_version, train, versions
from services.ledger.read.projections import invoices
from shared.auth import LedgerReader, ReplayOperator
from shared.business_dates import today_utc
from shared.dates import BusinessInstant
from shared.dependencies import EngineDep
from shared.money import quantize, to_text
from shared.problems import Problem, not_found
from shared.values import CURRENCY_PATTERN

router = APIRouter(tags=["predictions"])
RECORDS = RecordsCache()  # the customers last asked for, read again once anything of theirs is recorded
FORECAST_CUSTOMERS = 2_000  # customers predicted at once by the forecast


class PredictionOut(BaseModel):
    invoice_id: str
    as_of: date
    predicted_pay_date: date
    predicted_days_late: int
    probability_late: float
    interval: dict[str, int]
    model_version: str
    factors: list[dict[str, Any]]


def shown(p: Prediction) -> dict[str, Any]:
    return {"invoice_id": p.invoice_id, "as_of": p.as_of, "predicted_pay_date": p.predicted_pay_date,
            "predicted_days_late": p.predicted_days_late, "probability_late": p.probability_late,
            "interval": {"p10_days_late": p.p10_days_late, "p90_days_late": p.p90_days_late},
            "model_version": p.model_version,
            "factors": [{"name": name, "contribution": contribution} for name, contribution in p.factors]}


def _predictions(engine: Engine, customer_id: str, invoice_id: str | None, day: date,
                 known: datetime) -> list[Prediction] | None:
    """The customer's predictions (of one invoice, or of every one open on ``day``)."""
    with engine.connect() as conn:  # (one connection for both: a checkout costs a round trip)
        version = newest_version(conn, known)
        records = RECORDS.get(conn, customer_id)
    model = load_version(engine, version)
    if records is None:
        return None
    targets = [i for i, record in enumerate(records) if invoice_id in (None, record.invoice_id)]
    answers = predict_many(records, targets, day, known, model, version or "none")
    return [a for a in answers if a is not None and (invoice_id is not None or a.model_version != ACTUAL)]


@router.get("/invoices/{invoice_id}/prediction", response_model=PredictionOut,
            responses={409: {"description": "Nothing to predict: cancelled, written off or not yet known"}})
async def get_invoice_prediction(invoice_id: str, engine: EngineDep, _: LedgerReader, as_of: AsOf = None,
                                 known_at: KnownAt = None) -> dict[str, Any]:
    """When the invoice will be paid, predicted on ``as_of`` from what was recorded by ``known_at``
    (the features and the model alike): an open invoice is paid on or after ``as_of``."""
    day, known = as_of or today_utc(), as_utc(known_at) or datetime.now(UTC)

    def read() -> tuple[bool, list[Prediction] | None]:
        with engine.connect() as conn:
            row = conn.execute(select(invoices.c.customer_id, invoices.c.issue_date)
                               .where(invoices.c.invoice_id == invoice_id)).first()
        if row is None:
            return False, None
        return row.issue_date <= day, _predictions(engine, row.customer_id, invoice_id, day, known)

    issued, found = await asyncio.to_thread(read)
    if not found:
        if issued:  # (issued by then, yet no prediction: cancelled, written off, or recorded later)
            raise Problem(409, "not-predictable", detail=f"invoice {invoice_id} has no payment to predict on "
                          f"{day} as known then: cancelled, written off, or not recorded yet")
        raise not_found("invoice", invoice_id)
    return shown(found[0])


class PredictionsOut(BaseModel):
    customer_id: str
    as_of: date
    known_at: datetime | None
    predictions: list[PredictionOut]


@router.get("/customers/{customer_id}/predictions", response_model=PredictionsOut)
async def get_customer_predictions(customer_id: str, engine: EngineDep, _: LedgerReader, as_of: AsOf = None,
                                   known_at: KnownAt = None) -> dict[str, Any]:
    """Every invoice of the customer open on ``as_of`` (as known at ``known_at``), predicted."""
    day, known = as_of or today_utc(), as_utc(known_at)
    found = await asyncio.to_thread(_predictions, engine, customer_id, None, day, known or datetime.now(UTC))
    if found is None:
        raise not_found("customer", customer_id)
    return {"customer_id": customer_id, "as_of": day, "known_at": known,
            "predictions": [shown(p) for p in found]}


class CustomerOutlookOut(BaseModel):
    customer_id: str
    currency: str
    open_amount: str
    overdue_amount: str
    expected_loss: str
    predicted_days_late: int | None
    invoices: int


class OutlooksOut(BaseModel):
    as_of: date
    known_at: datetime | None
    model_version: str
    customers: list[CustomerOutlookOut]


def open_on(records: list[InvoiceRecord], day: date, known: datetime) -> dict[int, Decimal]:
    """The open amount of each of the customer's invoices open on ``day`` (by its index)."""
    found = {}
    for index, record in enumerate(records):
        now = known_state(record, day, known)
        if now is not None and not now.cancelled and now.open_amount > 0 and now.settled_on is None:
            found[index] = now.open_amount
    return found


def outlook(records: list[InvoiceRecord], open_amounts: dict[int, Decimal], answers: list[Prediction | None],
            day: date) -> list[dict[str, Any]]:
    """One customer's open invoices on ``day`` (``open_on``, and their predictions in its order)
    summed per currency: open and overdue amounts, the expected loss (each overdue invoice's open
    amount x its probability of being paid more than ``VERY_LATE_DAYS`` late, summed, rounded
    half-up to the cent) and the open-amount-weighted mean of their predicted days late."""
    sums: dict[str, dict[str, Any]] = {}
    for index, answer in zip(open_amounts, answers, strict=True):
        if answer is None:
            continue
        record, amount = records[index], open_amounts[index]
        found = sums.setdefault(record.currency, {"open": Decimal(0), "overdue": Decimal(0),
                                                  "loss": Decimal(0), "late_days": Decimal(0), "invoices": 0})
        found["open"] += amount
        found["late_days"] += amount * answer.predicted_days_late
        found["invoices"] += 1
        if record.due_date < day:
            found["overdue"] += amount
            found["loss"] += amount * Decimal(str(answer.probability_very_late))
    return [{"currency": code, "open_amount": to_text(f["open"], code),
             "overdue_amount": to_text(f["overdue"], code),
             "expected_loss": to_text(quantize(f["loss"], code), code),
             "predicted_days_late": int((f["late_days"] / f["open"]).to_integral_value(ROUND_HALF_UP))
             if f["open"] else None, "invoices": f["invoices"]}
            for code, f in sorted(sums.items())]


@router.get("/predictions/customers", response_model=OutlooksOut)
async def get_customer_outlooks(
    engine: EngineDep, _: LedgerReader,
    customer_id: Annotated[list[str], Query(min_length=1, max_length=500, description="repeat for more")],
    as_of: AsOf = None, known_at: KnownAt = None,
) -> dict[str, Any]:
    """Many customers at once (for the dunning worklist and the credit score): per customer and
    currency its open and overdue amounts, the expected loss and the predicted days late of its
    open invoices on ``as_of``, as known at ``known_at``. A customer with nothing open is left
    out."""
    day, known = as_of or today_utc(), as_utc(known_at)

    def read() -> tuple[str, list[dict[str, Any]]]:
        instant = known or datetime.now(UTC)
        version, model = model_at(engine, instant)
        with engine.connect() as conn:
            books = customer_records(conn, customer_id)
        customers = sorted(books)
        opens = [open_on(books[customer], day, instant) for customer in customers]
        predicted = predict_books([(books[c], list(o)) for c, o in zip(customers, opens, strict=True)], day,
                                  instant, model, version or "none", explain=False)
        found = [{"customer_id": customer, **row}
                 for customer, open_amounts, answers in zip(customers, opens, predicted, strict=True)
                 for row in outlook(books[customer], open_amounts, answers, day)]
        return (version if model is not None else None) or BASELINE, found

    version, found = await asyncio.to_thread(read)
    return {"as_of": day, "known_at": known, "model_version": version, "customers": found}


class WeekOut(BaseModel):
    week_start: date
    expected: str
    low: str
    high: str


class CurrencyForecastOut(BaseModel):
    currency: str
    open_total: str
    weeks: list[WeekOut]


class ForecastOut(BaseModel):
    as_of: date
    known_at: datetime | None
    model_version: str
    currency: str | None
    weeks: list[WeekOut]  # of ``currency``, or of the book's only currency
    currencies: list[CurrencyForecastOut]


@router.get("/forecast/collections", response_model=ForecastOut)
async def get_collections_forecast(
    engine: EngineDep, _: LedgerReader, as_of: AsOf = None, known_at: KnownAt = None,
    weeks: Annotated[int, Query(ge=1, le=104)] = 8,
    currency: Annotated[str | None, Query(pattern=CURRENCY_PATTERN)] = None,
) -> dict[str, Any]:
    """Per currency and week from ``as_of``'s Monday: the open amount expected to come in, with an
    80% band (``low``, ``high``), from every open invoice's predicted pay-date distribution."""
    day, known = as_of or today_utc(), as_utc(known_at)

    def read() -> tuple[str, dict[str, list[tuple[Prediction, Decimal]]]]:
        instant = known or datetime.now(UTC)
        version, model = model_at(engine, instant)
        with engine.connect() as conn:
            ids = [row[0] for row in conn.execute(select(invoices.c.customer_id).distinct()
                                                  .where(invoices.c.issue_date <= day))]
            books = customer_records(conn, ids)
        by_currency: dict[str, list[tuple[Prediction, Decimal]]] = defaultdict(list)
        # the models asked once for the open invoices of FORECAST_CUSTOMERS customers (their
        # features' rows held meanwhile), without factors
        everyone = list(books.values())
        for start in range(0, len(everyone), FORECAST_CUSTOMERS):
            opens = [(records, open_on(records, day, instant))
                     for records in everyone[start:start + FORECAST_CUSTOMERS]]
            predicted = predict_books([(records, list(amounts)) for records, amounts in opens], day, instant,
                                      model, version or "none", explain=False)
            for (records, amounts), answers in zip(opens, predicted, strict=True):
                for (index, amount), answer in zip(amounts.items(), answers, strict=True):
                    if answer is not None:
                        by_currency[records[index].currency].append((answer, amount))
        return version or BASELINE, by_currency

    version, by_currency = await asyncio.to_thread(read)
    shown_currencies = []
    for code in sorted(by_currency):
        if currency is not None and code != currency:
            continue
        items = by_currency[code]
        shown_currencies.append({
            "currency": code, "open_total": to_text(sum((a for _, a in items), Decimal(0)), code),
            "weeks": [{"week_start": w.week_start, "expected": to_text(w.expected, code),
                       "low": to_text(w.low, code), "high": to_text(w.high, code)}
                      for w in forecast(items, day, weeks, code)]})
    only = shown_currencies[0]["weeks"] if len(shown_currencies) == 1 else []
    return {"as_of": day, "known_at": known, "model_version": version, "currency": currency, "weeks": only,
            "currencies": shown_currencies}


class TrainIn(BaseModel):
    until: BusinessInstant | None = Field(default=None, description="the cut-off: what was recorded by "
                                          "then (default now)")
    seed: int = Field(default=7, ge=0, le=2**31 - 1)


class ModelOut(BaseModel):
    model_version: str
    trained_at: datetime
    cutoff: datetime
    seed: int
    training_invoices: int
    examples: int
    metrics: dict[str, Any]
    libraries: dict[str, str]


@router.post("/admin/models", status_code=201, response_model=ModelOut, tags=["operations"])
async def post_model(engine: EngineDep, _: ReplayOperator,
                     body: Annotated[TrainIn | None, Body()] = None) -> dict[str, Any]:
    """Train a model version from what was recorded by ``until`` and store it (the same cut-off
    and seed again answer the stored one)."""
    now = datetime.now(UTC)
    cutoff = as_utc(body.until if body else None) or now
    return await asyncio.to_thread(train, engine, min(cutoff, now), now, body.seed if body else 7)


class ModelsOut(BaseModel):
    models: list[ModelOut]


@router.get("/admin/models", response_model=ModelsOut, tags=["operations"])
async def get_models(engine: EngineDep, _: ReplayOperator) -> dict[str, Any]:
    """Every model version, newest first."""
    return {"models": await asyncio.to_thread(versions, engine)}

