"""Risk score (0-100, higher is riskier) and grade (A-E) from a customer's payment behaviour.

The score is the sum of five factors' contributions; each contribution is the factor's
weight times its intensity, a number from 0 (no risk signal) to 1 (saturated), rounded
half-up to 0.01, so the factors always add up to the score exactly. The weights are data
(``RiskModel.weights``) and must sum to 100.

The history looked at is the window of the last recency band (365 days by default): the
invoices *due* in it (``as_of - due_date`` at most the window; invoices paid before their
due date count as well) plus every invoice still open and past due, however old. Cancelled
invoices are left out. An invoice's days late are ``settled_date - due_date`` when it was
settled by ``as_of``, else ``as_of - due_date`` (late so far), never below zero.

Factors (default weights):

``weighted_days_late`` (35)
    The average of days late weighted by recency: an invoice due at most 90 days before
    ``as_of`` weighs 4, at most 180 days 2, at most 365 days 1 (``recency``; older open
    invoices take the last band's weight). Intensity: average / 60 days, at most 1.
``late_share`` (25)
    The share of those invoices more than ``late_after_days`` (0) days late. Intensity: the
    share itself.
``max_days_past_due`` (25)
    The largest days past due of an invoice open on ``as_of`` (disputed ones included).
    Intensity: days / 90, at most 1.
``dispute_rate`` (10)
    The share of invoices issued in the window on which a dispute was ever opened.
    Intensity: rate / 0.5, at most 1.
``trend`` (5)
    Worsening behaviour: the plain average days late of the invoices due in the last 90
    days less that of the older ones in the window. Intensity: the increase / 30 days,
    between 0 and 1. Improvement scores 0 here; it already lowers the recency-weighted
    average. Zero when either group is empty.

``outside_rating`` (20, only for a customer with a usable rating)
    What agencies and bureaus say (``rating.reported``): the latest report of each provider,
    usable when reported on or before ``as_of``, at most ``ratings.max_age_days`` old and not
    past its ``valid_until``. A provider's scale is read as an intensity by configuration
    (``ratings.providers``: its grades' intensities, or its best and worst scores, linearly);
    a provider not configured is read by its probability of default (/ ``pd_saturation``);
    one with neither is shown but not used. Intensity: the worst usable rating's. With one,
    the five behaviour factors count for (100 - weight)% of their weights, so the score
    stays within 100 and the factors still add up to it.

``predicted_lateness`` (10, only for a customer with a usable prediction and an invoice open)
    What the ledger's payment model expects (``LatenessPredicted``, recorded from
    ``GET /predictions/customers`` before each review when a ledger is configured): the open
    invoices' predicted days late, the worst currency's, from the latest prediction made on or
    before ``as_of`` and at most ``predictions.max_age_days`` old. Intensity: days /
    ``predictions.saturation_days`` (60), at most 1. Like a rating, it takes its weight from the
    behaviour factors (they count for (100 - the weights of the rating and the prediction
    used)%). Without a usable prediction (no ledger, the ledger down, nothing predicted lately)
    the score is the behaviour's and the rating's, as before predictions existed.

Grades by score: A below 20, B from 20, C from 40, D from 60, E from 80
(``RiskModel.grades``). A customer with no invoice in the history and no usable rating is
not rated: no grade, score 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.money import ZERO
from shared.values import Grade, RuleNumber

GRADES: tuple[Grade, ...] = ("A", "B", "C", "D", "E")
FACTORS = ("weighted_days_late", "late_share", "max_days_past_due", "dispute_rate", "trend")

ONE = Decimal(1)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
_RATIO = Decimal("0.0001")
# Divisions at a fixed precision: the same history scores the same on any machine.
_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)




class RecencyBand(BaseModel):
    """Invoices due at most ``max_age_days`` before the assessment date weigh ``weight``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_age_days: int = Field(ge=1)
    weight: RuleNumber = Field(gt=ZERO)


class FactorWeights(BaseModel):
    """Points each factor may contribute at most; they sum to 100."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weighted_days_late: RuleNumber = Decimal(35)
    late_share: RuleNumber = Decimal(25)
    max_days_past_due: RuleNumber = Decimal(25)
    dispute_rate: RuleNumber = Decimal(10)
    trend: RuleNumber = Decimal(5)

    @model_validator(mode="after")
    def _sum_to_100(self) -> FactorWeights:
        total = sum((getattr(self, name) for name in FACTORS), ZERO)
        if total != HUNDRED:
            raise ValueError(f"weights must sum to 100, got {total}")
        return self


class GradeFloors(BaseModel):
    """The lowest score of each grade below A (A starts at 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    B: RuleNumber = Decimal(20)
    C: RuleNumber = Decimal(40)
    D: RuleNumber = Decimal(60)
    E: RuleNumber = Decimal(80)

    @model_validator(mode="after")
    def _ascending(self) -> GradeFloors:
        floors = [ZERO, self.B, self.C, self.D, self.E]
        if any(later <= earlier for earlier, later in pairwise(floors)) or self.E > HUNDRED:
            raise ValueError(f"grade floors must ascend strictly within (0, 100], got {floors[1:]}")
        return self

    def grade(self, score: Decimal) -> Grade:
        for grade in ("E", "D", "C", "B"):
            if score >= getattr(self, grade):
                return grade
        return "A"


class ProviderScale(BaseModel):
    """How one provider's rating reads as an intensity from 0 (best) to 1 (worst): its grades'
    intensities, else linearly between its best and worst scores (either may be the higher)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grades: dict[str, RuleNumber] = Field(default_factory=dict)
    best_score: Decimal | None = None
    worst_score: Decimal | None = None

    @model_validator(mode="after")
    def _readable(self) -> ProviderScale:
        if any(value > ONE for value in self.grades.values()):
            raise ValueError("grades: intensities lie between 0 and 1")
        if (self.best_score is None) != (self.worst_score is None) or (
                self.best_score is not None and self.best_score == self.worst_score):
            raise ValueError("best_score and worst_score: both, and different, or neither")
        if not self.grades and self.best_score is None:
            raise ValueError("a scale needs grades or best_score and worst_score")
        return self

    def intensity(self, grade: str, score: Decimal) -> Decimal | None:
        if grade in self.grades:
            return self.grades[grade]
        if self.best_score is None or self.worst_score is None:
            return None
        return max(ZERO, min(ONE, _ratio(score - self.best_score, self.worst_score - self.best_score)))


class PredictionModel(BaseModel):
    """How the ledger's predicted lateness enters the score (``predicted_lateness``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: RuleNumber = Field(default=Decimal(10), le=HUNDRED)
    max_age_days: int = Field(default=14, ge=0)
    saturation_days: int = Field(default=60, ge=1)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The ledger's latest prediction for a customer, as the score reads it."""

    as_of: date
    model_version: str
    days_late: int  # the worst currency's open-amount-weighted predicted days late
    currency: str

    def usable_on(self, as_of: date, model: PredictionModel) -> bool:
        return self.as_of <= as_of and (as_of - self.as_of).days <= model.max_age_days


class RatingModel(BaseModel):
    """How outside ratings enter the score (``outside_rating``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: RuleNumber = Field(default=Decimal(20), le=HUNDRED)
    max_age_days: int = Field(default=365, ge=1)
    pd_saturation: RuleNumber = Field(default=Decimal("0.2"), gt=ZERO, le=ONE)
    providers: dict[str, ProviderScale] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rating:
    """One provider's latest report, as the score reads it."""

    provider: str
    grade: str
    score: Decimal
    probability_of_default: Decimal | None
    report_date: date
    valid_until: date | None

    def usable_on(self, as_of: date, model: RatingModel) -> bool:
        return (self.report_date <= as_of and (as_of - self.report_date).days <= model.max_age_days
                and (self.valid_until is None or as_of <= self.valid_until))

    def intensity(self, model: RatingModel) -> Decimal | None:
        scale = model.providers.get(self.provider)
        if scale is not None:
            return scale.intensity(self.grade, self.score)
        if self.probability_of_default is not None:
            return min(ONE, _ratio(self.probability_of_default, model.pd_saturation))
        return None


def _default_recency() -> tuple[RecencyBand, ...]:
    return (RecencyBand(max_age_days=90, weight=Decimal(4)), RecencyBand(max_age_days=180, weight=Decimal(2)),
            RecencyBand(max_age_days=365, weight=Decimal(1)))


class RiskModel(BaseModel):
    """How payment behaviour is scored: the parameters of every factor, as data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recency: tuple[RecencyBand, ...] = Field(default_factory=_default_recency, min_length=1)
    late_after_days: int = Field(default=0, ge=0)
    days_late_saturation: int = Field(default=60, ge=1)
    days_past_due_saturation: int = Field(default=90, ge=1)
    dispute_rate_saturation: RuleNumber = Field(default=Decimal("0.5"), gt=ZERO, le=ONE)
    trend_recent_days: int = Field(default=90, ge=1)
    trend_saturation_days: int = Field(default=30, ge=1)
    weights: FactorWeights = Field(default_factory=FactorWeights)
    grades: GradeFloors = Field(default_factory=GradeFloors)
    ratings: RatingModel = Field(default_factory=RatingModel)
    predictions: PredictionModel = Field(default_factory=PredictionModel)

    @model_validator(mode="after")
    def _bands_ascend(self) -> RiskModel:
        if self.ratings.weight + self.predictions.weight > HUNDRED:
            raise ValueError("ratings.weight + predictions.weight: at most 100 together")
        ages = [band.max_age_days for band in self.recency]
        if any(later <= earlier for earlier, later in pairwise(ages)):
            raise ValueError(f"recency: max_age_days must ascend strictly, got {ages}")
        if self.trend_recent_days >= self.window_days:
            raise ValueError("trend_recent_days must be shorter than the window (the last recency band)")
        return self

    @property
    def window_days(self) -> int:
        return self.recency[-1].max_age_days

    def recency_weight(self, age_days: int) -> Decimal:
        for band in self.recency:
            if age_days <= band.max_age_days:
                return band.weight
        return self.recency[-1].weight


@dataclass(frozen=True, slots=True)
class InvoiceHistory:
    """What scoring needs of one (not cancelled) invoice."""

    invoice_id: str
    issue_date: date
    due_date: date
    settled_date: date | None  # None while open
    is_open: bool  # an open amount above zero
    disputed: bool  # a dispute was ever opened on it


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor of the score: what was measured, its intensity and the points it adds."""

    name: str
    value: Decimal  # the measure: days, a share or a rate
    intensity: Decimal  # 0..1
    weight: Decimal
    contribution: Decimal  # weight x intensity, to 0.01
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "value": str(self.value), "intensity": str(self.intensity),
                "weight": str(self.weight), "contribution": str(self.contribution), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """A customer's score on a date, with every factor; ``grade`` is None when not rated."""

    as_of: date
    score: Decimal
    grade: Grade | None
    factors: tuple[Factor, ...]
    invoices_assessed: int

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "score": str(self.score), "grade": self.grade,
                "invoices_assessed": self.invoices_assessed,
                "factors": [factor.as_dict() for factor in self.factors]}


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    return _CONTEXT.divide(numerator, denominator)


def _factor(name: str, value: Decimal, intensity: Decimal, model: RiskModel, detail: str,
            scale: Decimal = ONE) -> Factor:
    """``scale``: the share of its weight a behaviour factor keeps beside an outside rating."""
    intensity = max(ZERO, min(ONE, intensity))
    weight = (model.ratings.weight if name == "outside_rating" else model.predictions.weight
              if name == "predicted_lateness" else getattr(model.weights, name) * scale)
    contribution = _CONTEXT.multiply(weight, intensity).quantize(CENT, rounding=ROUND_HALF_UP)
    return Factor(name, value, intensity.quantize(_RATIO, rounding=ROUND_HALF_UP), weight, contribution,
                  detail)


def _days_late(invoice: InvoiceHistory, as_of: date) -> int:
    settled = invoice.settled_date if invoice.settled_date and invoice.settled_date <= as_of else None
    return max(0, ((settled or as_of) - invoice.due_date).days)


def _open_on(invoice: InvoiceHistory, as_of: date) -> bool:
    """Open at ``as_of``: open now, or settled only after it."""
    return invoice.is_open or (invoice.settled_date is not None and invoice.settled_date > as_of)


def _rating_factor(ratings: Iterable[Rating], as_of: date, model: RiskModel) -> Factor | None:
    """The ``outside_rating`` factor: the worst usable rating's intensity (None: none usable)."""
    read = [(r, r.intensity(model.ratings)) for r in sorted(ratings, key=lambda r: r.provider)
            if r.usable_on(as_of, model.ratings)]
    used = [(r, i) for r, i in read if i is not None]
    if not used:
        return None
    worst = max(i for _, i in used)
    detail = "; ".join(f"{r.provider} {r.grade} (score {r.score}, {r.report_date.isoformat()})"
                       + (f" reads {i.quantize(_RATIO, rounding=ROUND_HALF_UP)}" if i is not None
                          else " not on a configured scale: not used")
                       for r, i in read)
    return _factor("outside_rating", worst.quantize(_RATIO, rounding=ROUND_HALF_UP), worst, model,
                   f"the worst of: {detail}")


def _prediction_factor(prediction: Prediction | None, as_of: date, model: RiskModel) -> Factor | None:
    """The ``predicted_lateness`` factor (None: no usable prediction)."""
    if prediction is None or not prediction.usable_on(as_of, model.predictions):
        return None
    days = Decimal(prediction.days_late)
    detail = (f"the ledger predicts the open {prediction.currency} invoices paid {days} days late "
              f"(model {prediction.model_version}, predicted on {prediction.as_of.isoformat()})")
    return _factor("predicted_lateness", days, _ratio(days, Decimal(model.predictions.saturation_days)),
                   model, detail)


def assess(invoices: Iterable[InvoiceHistory], as_of: date, model: RiskModel,
           ratings: Iterable[Rating] = (), prediction: Prediction | None = None) -> RiskAssessment:
    """Score the history as of ``as_of`` (see the module docstring for every factor)."""
    invoices = [invoice for invoice in invoices if invoice.issue_date <= as_of]
    rating = _rating_factor(ratings, as_of, model)
    # a prediction is of the open invoices: with none open on the day, it has nothing to say
    predicted = (_prediction_factor(prediction, as_of, model)
                 if any(_open_on(invoice, as_of) for invoice in invoices) else None)
    outside = tuple(factor for factor in (rating, predicted) if factor is not None)
    scale = (HUNDRED - sum((f.weight for f in outside), ZERO)) / HUNDRED if outside else ONE
    window = model.window_days
    assessed: list[tuple[InvoiceHistory, int, int]] = []  # invoice, age, days late
    issued = disputed = 0
    max_past_due = 0
    for invoice in invoices:
        if (as_of - invoice.issue_date).days <= window:
            issued += 1
            disputed += invoice.disputed
        age = (as_of - invoice.due_date).days
        open_on = _open_on(invoice, as_of)
        settled_by_then = invoice.settled_date is not None and not open_on
        if open_on and age > 0:
            max_past_due = max(max_past_due, age)
        if (settled_by_then and age <= window) or (open_on and age > 0):
            assessed.append((invoice, age, _days_late(invoice, as_of)))
    if not assessed:
        factors = tuple(_factor(name, ZERO, ZERO, model, "no invoice due yet", scale) for name in FACTORS)
        if not outside:
            return RiskAssessment(as_of, ZERO.quantize(CENT), None, factors, 0)
        score = sum((f.contribution for f in (*factors, *outside)), ZERO)  # graded by them alone
        return RiskAssessment(as_of, score, model.grades.grade(score), (*factors, *outside), 0)

    weights = [model.recency_weight(age) for _, age, _ in assessed]
    weighted = sum((w * late for w, (_, _, late) in zip(weights, assessed, strict=True)), ZERO)
    average = _ratio(weighted, sum(weights, ZERO))
    late_count = sum(1 for _, _, late in assessed if late > model.late_after_days)
    share = _ratio(Decimal(late_count), Decimal(len(assessed)))
    rate = _ratio(Decimal(disputed), Decimal(issued)) if issued else ZERO
    recent = [late for _, age, late in assessed if age <= model.trend_recent_days]
    earlier = [late for _, age, late in assessed if age > model.trend_recent_days]
    if recent and earlier:
        change = _ratio(Decimal(sum(recent)), Decimal(len(recent))) - _ratio(
            Decimal(sum(earlier)), Decimal(len(earlier)))
    else:
        change = ZERO

    factors = (
        _factor("weighted_days_late", average.quantize(CENT, rounding=ROUND_HALF_UP),
                _ratio(average, Decimal(model.days_late_saturation)), model,
                f"recency-weighted average days late over {len(assessed)} invoices", scale),
        _factor("late_share", share.quantize(_RATIO, rounding=ROUND_HALF_UP), share, model,
                f"{late_count} of {len(assessed)} invoices more than {model.late_after_days} days late",
                scale),
        _factor("max_days_past_due", Decimal(max_past_due),
                _ratio(Decimal(max_past_due), Decimal(model.days_past_due_saturation)), model,
                f"oldest open invoice {max_past_due} days past due", scale),
        _factor("dispute_rate", rate.quantize(_RATIO, rounding=ROUND_HALF_UP),
                _ratio(rate, model.dispute_rate_saturation), model,
                f"{disputed} of {issued} invoices issued in {window} days disputed", scale),
        _factor("trend", change.quantize(CENT, rounding=ROUND_HALF_UP),
                _ratio(change, Decimal(model.trend_saturation_days)), model,
                f"average days late of the last {model.trend_recent_days} days less the earlier ones"
                if recent and earlier else "not enough history on both sides", scale),
    )
    factors = (*factors, *outside)
    score = sum((factor.contribution for factor in factors), ZERO)
    return RiskAssessment(as_of, score, model.grades.grade(score), factors, len(assessed))
