"""Inbound events the console puts on Kafka: disputes from the portal (``ar.disputes``) and a
provider's payments (``ar.payments``), keyed by customer id as every inbound message is.

The producer starts on first use, so the pages serve while Kafka is away; a send that fails
raises :class:`PublishFailed`, which the portal shows and the webhook answers with 503 (the
provider sends again; the ledger counts the ``(source, id)`` once).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.envelope import encode_event

SEND_TIMEOUT_SECONDS = 10.0


class PublishFailed(RuntimeError):
    """The broker did not take the event."""


class Publisher:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                            request_timeout_ms=int(SEND_TIMEOUT_SECONDS * 1000))
                try:
                    await asyncio.wait_for(producer.start(), SEND_TIMEOUT_SECONDS)
                except (KafkaError, TimeoutError, OSError) as error:
                    await producer.stop()
                    raise PublishFailed(f"Kafka at {self.bootstrap} cannot be reached: {error}") from None
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, *, event_id: str, source: str, event_type: str, customer_id: str,
                      data: dict[str, Any]) -> None:
        value = encode_event(event_id=event_id, source=source, event_type=event_type, subject=customer_id,
                             data=data)
        producer = await self._started()
        try:
            await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=customer_id.encode()),
                                   SEND_TIMEOUT_SECONDS)
        except (KafkaError, TimeoutError) as error:
            raise PublishFailed(f"Kafka did not take the event: {type(error).__name__}") from None

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
