"""The outbox relay: publish committed domain events to Kafka, at least once.

It follows the event store's notification log; a batch is sent and acknowledged by the
broker before its position is recorded (an eventsourcing tracking record), so a crash
re-sends rather than loses. Outbound ids are deterministic, so consumers dedupe on ``id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from eventsourcing.persistence import Notification

from shared.eventstore import TrackedApplication

log = logging.getLogger(__name__)

# The largest outbound message published whole: a Kafka broker and producer take 1 MiB by
# default, record headers and batch overhead included. Inbound messages are bounded far
# below this (shared.erp_events), so only an event that gathers very much (a payment of a
# thousand allocations with long ids) could come near it.
MAX_OUTBOUND_BYTES = 900 * 1024
# A trimmed event keeps the scalar fields of its data up to this length (ids, amounts, dates).
_KEPT_SCALAR_CHARS = 200


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
        *,
        translate_stored: Callable[[Notification], list[Outbound]] | None = None,
    ) -> None:
        """``translate`` maps a domain event; ``translate_stored``, if given, does the same
        from the stored event without building the domain event object (cheaper)."""
        self.app = app
        self.producer = producer
        self.translate = translate
        self.translate_stored = translate_stored or self._via_domain_event
        self.name = name
        self.published = 0
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, dict[bytes, int]] = {}  # topic -> key -> partition
        self._partition_count: dict[str, int] = {}

    def position(self) -> int:
        return self.app.position(self.name) or 0

    async def process(self, notifications: Sequence[Notification]) -> None:
        # One batch per partition, as the producer would make them, without its per-message
        # bookkeeping (a future, a metadata wait, a partitioner call): a fifth of the cost
        # of the relay. Keys go to the partitions the producer's default partitioner picks.
        batches: dict[tuple[str, int], BatchBuilder] = {}
        partitions: dict[str, list[int]] = {}
        futures = []
        sent = 0
        translate_stored = self.translate_stored
        for notification in notifications:
            for message in translate_stored(notification):
                if len(message.value) > MAX_OUTBOUND_BYTES:
                    message = trimmed(message, notification)
                topic, key = message.topic, message.key.encode()
                if topic not in partitions:
                    partitions[topic] = sorted(await self.producer.partitions_for(topic))
                partition = self._partition(topic, key, partitions[topic])
                batch = batches.get((topic, partition))
                if batch is None:
                    batch = batches[topic, partition] = self.producer.create_batch()
                if batch.append(key=key, value=message.value, timestamp=None) is None:
                    futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = batches[topic, partition] = self.producer.create_batch()
                    if batch.append(key=key, value=message.value, timestamp=None) is None:
                        # cannot happen below MAX_OUTBOUND_BYTES: a bug, not data to skip
                        raise RuntimeError(f"an outbound message of {len(message.value)} bytes does "
                                           "not fit in an empty producer batch")
                sent += 1
        for (topic, partition), batch in batches.items():
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        self.published += sent
        await asyncio.to_thread(self.app.record_position, self.name, notifications[-1].id)

    def _via_domain_event(self, notification: Notification) -> list[Outbound]:
        return self.translate(self.app.mapper.to_domain_event(notification))

    def _partition(self, topic: str, key: bytes, partitions: list[int]) -> int:
        if len(partitions) != self._partition_count.get(topic) or len(self._partitions[topic]) > 100_000:
            self._partition_count[topic] = len(partitions)
            self._partitions[topic] = {}
        known = self._partitions[topic]
        partition = known.get(key)
        if partition is None:
            partition = known[key] = self._partitioner(key, partitions, partitions)
        return partition


def trimmed(message: Outbound, notification: Notification) -> Outbound:
    """The message with its ``data`` cut to its short scalar fields and a pointer to the whole.

    Publishing it whole can never succeed, and holding the relay until it does would stop
    every event behind it. So the event goes out with ``truncated: true``, the size and
    SHA-256 of the message it would have been, and where the stored event is
    (``event_store``: the notification id, the aggregate and its version), from which the
    audit trail (or a replay) serves it whole. Consumers that need the cut fields refuse
    it by their own validation (a dead letter of theirs), so the loss is visible.
    """
    envelope = orjson.loads(message.value)
    data = envelope.get("data") or {}
    kept = {name: value for name, value in data.items()
            if isinstance(value, bool | int | float | None)
            or (isinstance(value, str) and len(value) <= _KEPT_SCALAR_CHARS)}
    envelope["data"] = {
        **kept,
        "truncated": True,
        "original_size": len(message.value),
        "original_sha256": hashlib.sha256(message.value).hexdigest(),
        "event_store": {
            "notification_id": notification.id,
            "originator_id": str(notification.originator_id),
            "originator_version": notification.originator_version,
        },
    }
    log.error("outbound %s of %d bytes (notification %d) is over %d bytes: published trimmed",
              envelope.get("type"), len(message.value), notification.id, MAX_OUTBOUND_BYTES)
    return Outbound(message.topic, message.key, orjson.dumps(envelope))
