"""Outside ratings in the risk score (issue 19), worked out by hand.

One invoice due 31 January 2025, paid 30 days late on 2 March; scored on 31 March. Without a
rating: weighted days late 30 (intensity 0.5 of 35) 17.50 + late share 1 (of 25) 25.00 = 42.50,
grade C. With a rating the five behaviour factors keep 80% of their weights (the rating takes
20): 14.00 + 20.00 = 34.00, plus the rating's 20 x its intensity.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from services.credit.domain import CreditAccount, CreditRules, RiskModel
from services.credit.domain.risk import InvoiceHistory, ProviderScale, Rating, RatingModel, assess
from shared.erp_events import RatingFields, RatingReported
from shared.ledger_feed import read_fact
from tests.unit.ledger_feed_customer import rebuilt_from

D, M = date.fromisoformat, Decimal
AS_OF = D("2025-03-31")
LATE = [InvoiceHistory("I1", D("2025-01-01"), D("2025-01-31"), D("2025-03-02"), False, False)]


def rating(provider: str, grade: str, score: str, pd: str | None = None, reported: str = "2025-03-01",
           valid_until: str | None = None) -> Rating:
    return Rating(provider, grade, M(score), M(pd) if pd else None, D(reported),
                  D(valid_until) if valid_until else None)


def contributions(assessment: Any) -> dict[str, str]:
    return {f.name: str(f.contribution) for f in assessment.factors if f.contribution}


def test_without_a_rating_the_score_is_the_behaviour_alone() -> None:
    scored = assess(LATE, AS_OF, RiskModel())
    assert (str(scored.score), scored.grade) == ("42.50", "C")
    assert "outside_rating" not in [f.name for f in scored.factors]


def test_a_probability_of_default_reads_against_its_saturation() -> None:
    """Not configured, PD 0.05 reads 0.05 / 0.2 = 0.25: 5.00 points; 34.00 + 5.00 = 39.00, B."""
    scored = assess(LATE, AS_OF, RiskModel(), [rating("bureau", "BB", "61", pd="0.05")])
    assert contributions(scored) == {"weighted_days_late": "14.00", "late_share": "20.00",
                                     "outside_rating": "5.00"}
    assert (str(scored.score), scored.grade) == ("39.00", "B")
    factor = scored.factors[-1]
    assert (factor.weight, factor.intensity) == (M(20), M("0.2500"))
    assert sum((f.contribution for f in scored.factors), M(0)) == scored.score


def test_the_worst_usable_rating_counts_and_each_is_named() -> None:
    """A configured scale: crefo's grade 2- reads 0.6 (12.00 points), worse than the bureau's
    0.25; a third provider without scale or PD is named but not used. 46.00: C."""
    model = RiskModel(ratings=RatingModel(providers={"crefo": ProviderScale(grades={"2-": M("0.6")})}))
    scored = assess(LATE, AS_OF, model, [rating("bureau", "BB", "61", pd="0.05"),
                                         rating("crefo", "2-", "310"), rating("agency", "Baa1", "7")])
    assert contributions(scored)["outside_rating"] == "12.00"
    assert (str(scored.score), scored.grade) == ("46.00", "C")
    detail = scored.factors[-1].detail
    assert "crefo 2- (score 310, 2025-03-01) reads 0.6000" in detail
    assert "agency Baa1 (score 7, 2025-03-01) not on a configured scale: not used" in detail


def test_a_linear_scale_and_what_is_not_usable() -> None:
    """Scores 100 (best) to 600 (worst): 350 reads 0.5, 10.00 points. A report dated after the
    day, past its valid_until or older than a year is not used."""
    scale = ProviderScale(best_score=M(100), worst_score=M(600))
    model = RiskModel(ratings=RatingModel(providers={"crefo": scale}))
    scored = assess(LATE, AS_OF, model, [rating("crefo", "x", "350")])
    assert contributions(scored)["outside_rating"] == "10.00"
    for unusable in (rating("crefo", "x", "350", reported="2025-04-01"),
                     rating("crefo", "x", "350", valid_until="2025-03-30"),
                     rating("crefo", "x", "350", reported="2024-03-30")):
        assert str(assess(LATE, AS_OF, model, [unusable]).score) == "42.50"


def test_a_rating_alone_grades_a_customer_without_history() -> None:
    scored = assess([], AS_OF, RiskModel(), [rating("bureau", "CCC", "20", pd="0.2")])
    assert (str(scored.score), scored.grade) == ("20.00", "B")
    assert scored.grade is not None and assess([], AS_OF, RiskModel()).grade is None


def test_the_account_keeps_the_latest_report_per_provider_and_each_message_once() -> None:
    account = CreditAccount("C1")

    def reported(message_id: str, score: str, day: str) -> bool:
        fact = read_fact("rating.reported", {"customer_id": "C1", "provider": "bureau", "score": score,
                                             "grade": "BB", "probability_of_default": "0.05",
                                             "report_date": day}, message_id, source="bureau")
        return account.observe(fact, CreditRules())

    assert reported("r1", "61", "2025-03-01")
    assert not reported("r1", "61", "2025-03-01")  # the same message again
    assert reported("r0", "50", "2025-02-01")  # an older report: kept in the trail, not used
    assert account.ratings["bureau"]["score"] == "61"
    view = account.report_rating(RatingFields.model_validate(
        {"provider": "crefo", "score": "310", "grade": "2-", "report_date": "2025-03-05"}), "carol")
    assert (view["provider"], view["score"]) == ("crefo", "310")
    assert [r["provider"] for r in account.view()["ratings"]] == ["bureau", "crefo"]
    history = list(account.collect_events())
    assert [type(e).__name__ for e in history].count("RatingReported") == 3
    assert rebuilt_from(history).ratings == account.ratings
    assert isinstance(RatingReported.model_validate({"customer_id": "C1", **account.ratings["bureau"]}),
                      RatingReported)


def test_a_report_dated_later_waits_and_hides_nothing_before_it() -> None:
    """A typo dates a report in 2205: as of 2025 the real report of March counts."""
    account = CreditAccount("C2")
    for message_id, day, pd in (("t", "2205-03-01", "0.9"), ("r", "2025-03-01", "0.05")):
        account.observe(read_fact("rating.reported", {
            "customer_id": "C2", "provider": "bureau", "score": "1", "grade": "X",
            "probability_of_default": pd, "report_date": day}, message_id, source="bureau"), CreditRules())
    (used,) = account.rating_inputs(D("2025-04-01"))
    assert (used.report_date, used.probability_of_default) == (D("2025-03-01"), M("0.05"))


def test_a_score_beyond_any_scale_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    for score in ("9.99999999999999999999999999999E+999999", "1000000000000", "0.0000001"):
        with pytest.raises(ValidationError, match="score"):
            RatingFields.model_validate({"provider": "p", "score": score, "grade": "g",
                                         "report_date": "2025-01-01"})
