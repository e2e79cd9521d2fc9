"""The outbox relay: publish committed domain events to Kafka, at least once.

It follows the event store's notification log; a batch is sent and acknowledged by the
broker before its position is recorded (an eventsourcing tracking record), so a crash
re-sends rather than loses. Outbound ids are deterministic, so consumers dedupe on ``id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from eventsourcing.persistence import Notification

from shared.eventstore import TrackedApplication


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: str
    key: str
    value: bytes


class OutboxRelay:
    """A Follower that turns domain events into outbound messages."""

    def __init__(
        self,
        app: TrackedApplication,
        producer: AIOKafkaProducer,
        translate: Callable[[Any], list[Outbound]],
        name: str = "outbox",
    ) -> None:
        self.app = app
        self.producer = producer
        self.translate = translate
        self.name = name
        self.published = 0

    def position(self) -> int:
        return self.app.position(self.name) or 0

    async def process(self, notifications: Sequence[Notification]) -> None:
        futures = []
        for notification in notifications:
            domain_event = self.app.mapper.to_domain_event(notification)
            for message in self.translate(domain_event):
                futures.append(
                    await self.producer.send(
                        message.topic, key=message.key.encode(), value=message.value
                    )
                )
        await asyncio.gather(*futures)
        self.published += len(futures)
        await asyncio.to_thread(self.app.record_position, self.name, notifications[-1].id)
