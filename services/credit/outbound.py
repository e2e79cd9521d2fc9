"""Credit events to ``ar.credit.events`` (contract: credit.hold_placed, .hold_released,
.limit_changed, .risk_grade_changed; plus credit.hold_reasons_changed and
credit.limit_review_due).

What each stored event publishes is the domain's decision (``services.credit.domain.published``);
here it is wrapped in a CloudEvent whose id is derived from the stored event (account id,
version, index), so a re-sent message has the same id and consumers dedupe on ``id``; the
key and subject are the customer id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from services.credit.domain import published
from services.credit.domain.publication import PUBLISHING
from shared.envelope import encode_event
from shared.outbox import Outbound

TOPIC = "ar.credit.events"
SOURCE = "receivables/credit"


def stored_translator(app: Application[Any]) -> Callable[[Notification], list[Outbound]]:
    """``translate`` from the stored event: one that publishes nothing (a check, most of the
    log under load) is passed over by its topic, without decoding it."""
    to_domain_event = app.mapper.to_domain_event

    def translate_stored(notification: Notification) -> list[Outbound]:
        if notification.topic.rpartition(".")[2] not in PUBLISHING:
            return []
        return translate(to_domain_event(notification))

    return translate_stored


def translate(event: Any) -> list[Outbound]:
    """The outbound messages of one stored credit event (none for checks, facts, reviews)."""
    messages = published(event)
    if not messages:
        return []
    prefix = f"{event.originator_id}:{event.originator_version}"
    return [
        Outbound(TOPIC, data["customer_id"], encode_event(
            event_id=f"credit:{prefix}:{index}", source=SOURCE, event_type=event_type,
            subject=data["customer_id"], data=data, time=event.timestamp,
        ))
        for index, (event_type, data) in enumerate(messages)
    ]
