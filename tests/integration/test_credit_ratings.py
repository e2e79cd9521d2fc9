"""Outside ratings through Kafka (``ar.ratings``) and REST, on SQLite and PostgreSQL (issue 19).

By hand: customer RT's invoice of 1,000.00, due 31 January 2025, is paid 30 days late on 2
March. The review of 31 March scores it 42.50 (C) on behaviour alone. A bureau's rating with
a probability of default of 0.05 (read 0.25 of its 20 points: 5.00) comes on ``ar.ratings``,
and another provider's over REST with 0.10 (0.5: 10.00), the worst: behaviour at 80% of its
weights (14.00 + 20.00) plus 10.00 is 44.00, still C, with ``outside_rating`` among the
factors (read from the view's ``risk_as_of``: the score of that date). A rating with a
probability above 1 is dead-lettered, naming the field.
"""

from __future__ import annotations

from pathlib import Path

from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import InProcessCredit, credit_settings_for, write_tokens
from tests.integration.feed_harness import dead_letter_reasons
from tests.integration.ledger_harness import (
    InProcessLedger,
    Publisher,
    cloud_event,
    invoice_issued,
    ledger_settings,
    payment_received,
    poll,
)

WAIT = 30.0


def rated(message_id: str, **data: str) -> dict[str, object]:
    event = cloud_event("rating.reported", {"customer_id": "RT", **data}, event_id=message_id)
    event["source"] = "bureau/feed"
    return event


async def test_ratings_from_the_topic_and_by_rest_enter_the_score(
        credit_broker: EmbeddedBroker, database_url: str, tmp_path: Path) -> None:
    settings = credit_settings_for(credit_broker.bootstrap, database_url, write_tokens(tmp_path))
    async with InProcessLedger(ledger_settings(credit_broker.bootstrap, database_url)), \
            InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        await publisher.send(invoice_issued("RT", "RT-1", "1000.00", issue="2025-01-01", due="2025-01-31"))
        await credit.wait_view("RT", lambda v: v["exposure"] == "1000.00", "RT-1 in RT's exposure")
        await publisher.send(payment_received("RT", "RT-P", "1000.00", received="2025-03-02"))
        await credit.wait_view("RT", lambda v: v["positions"] == [], "RT-1 paid (no exposure left)")

        async def risk() -> dict[str, object]:
            response = await credit.get("/customers/RT/credit", as_of="2025-03-31")
            return dict(response.json()["risk_as_of"])

        assert ((await risk())["score"], (await risk())["grade"]) == ("42.50", "C")
        await publisher.send_all([
            rated("r-1", provider="bureau", score="61", grade="BB", probability_of_default="0.05",
                  report_date="2025-03-01"),
            rated("r-bad", provider="bureau", score="61", grade="BB", probability_of_default="1.5",
                  report_date="2025-03-02"),
        ])
        scored = await poll(risk, lambda r: r["score"] == "39.00", timeout=WAIT, what="the bureau's rating")
        assert scored["grade"] == "B"
        posted = await credit.post("/customers/RT/ratings", {
            "provider": "agency", "score": "7", "grade": "Baa3", "probability_of_default": "0.10",
            "report_date": "2025-03-10"}, as_="writer")
        assert posted.status_code == 201, posted.text
        assert (posted.json()["customer_id"], posted.json()["provider"]) == ("RT", "agency")
        assert (await credit.post("/customers/RT/ratings", {
            "provider": "agency", "score": "7", "grade": "Baa3", "report_date": "2025-03-10"},
            as_="reader")).status_code == 403
        worst = await risk()
        assert (worst["score"], worst["grade"]) == ("44.00", "C")
        factor = next(f for f in worst["factors"] if f["name"] == "outside_rating")
        assert (factor["contribution"], factor["weight"]) == ("10.00", "20")
        assert "agency Baa3" in factor["detail"] and "bureau BB" in factor["detail"]
        view = (await credit.get("/customers/RT/credit")).json()
        assert [(r["provider"], r["score"]) for r in view["ratings"]] == [("agency", "7"), ("bureau", "61")]
    reasons = await dead_letter_reasons(credit_broker.bootstrap, 1, timeout=WAIT)
    assert any("probability_of_default" in reason for reason in reasons), reasons
