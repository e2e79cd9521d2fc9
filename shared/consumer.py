"""The Kafka consumer loop: batches in, state and positions committed together.

Exactly-once effect rests on the database, not on Kafka: each batch of one partition is
applied and written with its position (an eventsourcing tracking record) in a single
transaction, and on every partition assignment the consumer seeks to the position held in
the database. Invalid messages go to the dead-letter topic *before* the batch commits,
so a crash can duplicate a dead letter but never lose one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import Tracking

from shared.envelope import encode_event
from shared.erp_events import InvalidMessage
from shared.metrics import ServiceMetrics
from shared.stalls import Failure
from shared.store_writer import Batches, StoreWriter

log = logging.getLogger(__name__)

DEADLETTER_TOPIC = "ar.deadletter"
# How much of a rejected original its dead letter keeps (base64 makes it a third larger):
# far below the 1 MiB a Kafka broker and producer take by default, whatever came in.
DEADLETTER_ORIGINAL_BYTES = 64 * 1024
DEADLETTER_TEXT_CHARS = 4000  # a reason or key longer than this is cut
# What the producer (before sending) or the broker answers to a message over its limit.
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)

M = TypeVar("M")
B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that will not be applied, and why."""

    record: ConsumerRecord[bytes, bytes]
    reason: str


# A fetched partition's records decoded: the messages, the records refused, each message's record
_Decoded = tuple[list[M], list[Rejected], dict[int, "ConsumerRecord[bytes, bytes]"]]


class Sink(Batches[M, B], Protocol[M, B]):
    """What the consumer drives: a service's application, seen from the Kafka side (its
    batches are written by the service's ``StoreWriter``)."""

    def refusals(self, batch: B) -> list[tuple[M, str]]: ...
    def position(self, name: str) -> int | None: ...
    def on_assigned(self) -> None: ...
    def counts(self, batch: B) -> tuple[int, int, int]: ...  # applied, duplicates, events


class Positions:
    """Stored positions per partition, named ``topic:partition`` (``:epochN`` after a reset).

    A memory-only broker that restarts, like a Kafka topic deleted and recreated, starts its
    offsets again at zero; the epoch gives the new life of the partition a fresh tracking
    name, so its smaller offsets are tracked instead of being skipped.
    """

    def __init__(self, sink: Sink[Any, Any]) -> None:
        self.sink = sink
        self.epochs: dict[TopicPartition, int] = {}
        self.next_offsets: dict[TopicPartition, int] = {}

    @staticmethod
    def tracking_name(tp: TopicPartition, epoch: int) -> str:
        base = f"{tp.topic}:{tp.partition}"
        return base if epoch == 0 else f"{base}:epoch{epoch}"

    def load(self, tp: TopicPartition) -> int:
        """Find the current epoch and the next offset to consume, from the database."""
        epoch, last = 0, self.sink.position(self.tracking_name(tp, 0))
        while last is not None:
            following = self.sink.position(self.tracking_name(tp, epoch + 1))
            if following is None:
                break
            epoch, last = epoch + 1, following
        self.epochs[tp] = epoch
        self.next_offsets[tp] = 0 if last is None else last + 1
        return self.next_offsets[tp]

    def start_new_epoch(self, tp: TopicPartition) -> None:
        self.epochs[tp] = self.epochs.get(tp, 0) + 1
        self.next_offsets[tp] = 0

    def tracking(self, tp: TopicPartition, last_offset: int) -> Tracking:
        return Tracking(self.tracking_name(tp, self.epochs.get(tp, 0)), last_offset)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: KafkaConsumerLoop[Any, Any]) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions revoked: %s", sorted(map(str, revoked)))
        self.loop.invalidate_assignment()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.loop.seek_to_stored_positions(assigned)


class KafkaConsumerLoop(Generic[M, B]):
    """Consume topics in batches and drive a Sink; pauses and resumes across outages."""

    def __init__(
        self,
        *,
        service: str,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        decode: Callable[[ConsumerRecord[bytes, bytes]], M],
        sink: Sink[M, B],
        producer: AIOKafkaProducer,
        metrics: ServiceMetrics,
        writer: StoreWriter | None = None,
        max_records: int = 2000,
        timeout_ms: int = 200,
        session_timeout_ms: int = 6000,
    ) -> None:
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.decode = decode
        self.sink = sink
        self.producer = producer
        self.metrics = metrics
        self.max_records = max_records
        self.timeout_ms = timeout_ms
        # Tansu holds a group join for half the session timeout, so keep it short.
        self.session_timeout_ms = session_timeout_ms
        self.positions = Positions(sink)
        self.writer = writer or StoreWriter()  # the service's one way into its store
        self.consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        # aiokafka fetches for a new assignment (from the committed offset, i.e. the
        # earliest) *before* the assignment callback has sought the positions stored in the
        # database, and the callback may run while a batch is being applied. Records are
        # only applied for partitions already sought when they were handed over (``_ready``),
        # with the callback and batches mutually exclusive (``_assignment_lock``); a batch
        # handed over before a rebalance (``_generation`` moved on) is dropped: the seek
        # makes the consumer fetch it again.
        self._assignment_lock = asyncio.Lock()
        self._generation = 0
        self._ready: set[TopicPartition] = set()
        self._assignment_failed = False
        self._broker_lost = False  # see broker_lost()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Consume until stopped; any failure pauses, backs off and resumes."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                await self._consume()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.metrics.errors.labels("consumer").inc()
                stalls = self.metrics.stalls
                if not stalls.recorded(error):  # a batch's failure is already told, with its partition
                    stalls.failed(Failure.of("consumer", "", None, error), cause=error)
                log.exception("%s consumer paused; retrying in %.1fs", self.service, backoff)
                await self._close_consumer()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)
        await self._close_consumer()

    async def stop(self) -> None:
        self._stopping.set()

    def broker_lost(self) -> None:
        """The broker lost every message it held (``receivables dev``'s memory-only broker
        died and is being started again): on the next assignment every partition consumed so
        far starts a new life at offset 0, whatever its new end.

        Without being told, the consumer sees a reset only when a partition's new end is
        below the stored position; one that has filled up again to it before the consumer
        rejoins looks unchanged, and its new messages up to there would be skipped.
        """
        self._broker_lost = True

    async def _close_consumer(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                log.warning("error while closing the consumer", exc_info=True)

    async def _consume(self) -> None:
        self.invalidate_assignment()
        self._assignment_failed = False
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            metadata_max_age_ms=5000,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 4),
        )
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        self.started.set()
        log.info("%s consuming %s as group %s", self.service, self.topics, self.group_id)
        # One fetch is applied (its transaction in a thread) while the next is fetched and
        # decoded: the event loop's share of a batch overlaps the database's.
        applying: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=self.timeout_ms, max_records=self.max_records
                )
                if self._assignment_failed:
                    raise RuntimeError("could not seek the assigned partitions to their stored positions")
                # as it stood when these records were handed over (a partition is ready from
                # the moment it is sought: records returned before that were fetched before)
                generation, ready = self._generation, frozenset(self._ready)
                fetched = [(tp, records, self._decode(records)) for tp, records in batches.items()
                           if tp in ready]
                if applying is not None:
                    await applying
                    applying = None
                reset = self._check_partition_ends()
                self._update_lag()
                fetched = [work for work in fetched if work[0] not in reset]  # fetched before the seek
                if fetched:
                    applying = asyncio.create_task(self._apply_fetched(fetched, generation))
            if applying is not None:
                await applying
                applying = None
        except asyncio.CancelledError:
            if applying is not None:
                applying.cancel()  # stopping: as when the consumer was cancelled inside a batch
            raise
        finally:
            if applying is not None:
                # a batch in flight ends (committed, or failed) before the consumer is closed
                # or restarted, as when it was applied inline
                try:
                    await applying
                except asyncio.CancelledError:
                    applying.cancel()
                    raise
                except Exception:
                    pass  # the exception on its way out says what went wrong first

    async def _apply_fetched(self, fetched: list[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]],
                                                     _Decoded[M]]], generation: int) -> None:
        for tp, records, decoded in fetched:
            await self._process_partition(tp, records, decoded, generation)

    # ------------------------------------------------------------------ positions

    def invalidate_assignment(self) -> None:
        """Records fetched until the next assignment is sought are not to be applied."""
        self._generation += 1
        self._ready.clear()

    async def seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        self.invalidate_assignment()
        async with self._assignment_lock:  # waits for a batch being applied
            try:
                await self._seek_to_stored_positions(assigned)
            except Exception:
                # aiokafka only logs a failed callback: make the loop restart the consumer
                self._assignment_failed = True
                raise

    async def _seek_to_stored_positions(self, assigned: list[TopicPartition]) -> None:
        assert self.consumer is not None
        await asyncio.to_thread(self.sink.on_assigned)
        if not assigned:
            return
        lost, self._broker_lost = self._broker_lost, False
        # A partition that ends below the stored position (the broker lost it) is noticed by
        # _check_partition_ends on the first fetch: ListOffsets is no help here, as Tansu
        # answers "latest" with the base offset of the last record batch plus one, which is
        # below the true end whenever that batch holds several records.
        for tp in assigned:
            stored = await asyncio.to_thread(self.positions.load, tp)
            if lost and stored > 0:
                self._reset_detected(tp, stored, None)
                stored = 0
            self.consumer.seek(tp, stored)
            self._ready.add(tp)
            self.metrics.position.labels(tp.topic, tp.partition).set(stored)
        log.info(
            "%s assigned %s",
            self.service,
            {str(tp): self.positions.next_offsets[tp] for tp in assigned},
        )

    def _reset_detected(self, tp: TopicPartition, stored: int, end: int | None) -> None:
        """``end`` None: the broker is known to have lost its data (``broker_lost``)."""
        seen = "the broker lost its data" if end is None else (
            f"it ends at offset {end}, below the stored position {stored}; the topic was recreated "
            "or the broker lost its data")
        log.error(
            "PARTITION RESET: %s: %s. Consuming the new messages from the start; messages seen "
            "before are recognised by their (source, id) and not applied twice.", tp, seen,
        )
        self.metrics.partition_resets.labels(tp.topic, tp.partition).inc()
        self.positions.start_new_epoch(tp)

    # ------------------------------------------------------------------ batches

    def _decode(self, records: list[ConsumerRecord[bytes, bytes]]) -> _Decoded[M]:
        """The records' messages, the records refused as invalid, and each message's record."""
        messages: list[M] = []
        rejected: list[Rejected] = []
        by_message: dict[int, ConsumerRecord[bytes, bytes]] = {}
        for record in records:
            try:
                message = self.decode(record)
            except InvalidMessage as error:
                rejected.append(Rejected(record, error.reason))
            else:
                by_message[id(message)] = record
                messages.append(message)
        return messages, rejected, by_message

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]], decoded: _Decoded[M],
        generation: int,
    ) -> None:
        async with self._assignment_lock:
            if generation != self._generation:
                log.debug("dropping %d records of %s fetched before a rebalance", len(records), tp)
                return
            await self._apply_partition(tp, records, decoded)

    async def _apply_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]], decoded: _Decoded[M]
    ) -> None:
        expected = self.positions.next_offsets.get(tp)
        if expected is None:
            expected = await asyncio.to_thread(self.positions.load, tp)
        if records and records[0].offset < expected:
            # The broker handed out offsets below our position: it lost the partition.
            self._reset_detected(tp, expected, records[0].offset)
        with self.metrics.batch_seconds.time():
            self.metrics.batch_size.observe(len(records))
            messages, rejected, by_message = decoded
            batch, refusals = await self._apply_and_commit(tp, records, messages, rejected, by_message)
        applied, duplicates, events = self.sink.counts(batch)
        self.positions.next_offsets[tp] = records[-1].offset + 1
        self.metrics.processed.labels(tp.topic).inc(applied)
        self.metrics.duplicates.labels(tp.topic).inc(duplicates)
        self.metrics.dead_lettered.labels(tp.topic).inc(len(rejected) + len(refusals))
        self.metrics.events_stored.inc(events)
        self.metrics.position.labels(tp.topic, tp.partition).set(records[-1].offset + 1)

    async def _apply_and_commit(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        messages: list[M],
        rejected: list[Rejected],
        by_message: dict[int, ConsumerRecord[bytes, bytes]],
    ) -> tuple[B, list[Rejected]]:
        """Prepare, dead-letter the refused, commit with the position; retry until it holds.

        Each failure is told to the stalls under the partition and the batch's first offset
        (``shared.stalls``): failing for long on the same batch makes the service unready.
        A batch that cannot even be prepared goes up to ``run``, which restarts the consumer.
        """
        stalls = self.metrics.stalls
        lane = f"{tp.topic}[{tp.partition}]"
        where = f"{lane}@{records[0].offset}"
        event = {"topic": tp.topic, "partition": tp.partition, "offset": records[0].offset,
                 "last_offset": records[-1].offset}
        backoff = 0.5
        prepared: list[B] = []
        refusals: list[Rejected] = []

        async def dead_letter_refused(batch: B) -> None:
            prepared[:] = [batch]
            refusals[:] = [Rejected(by_message[id(message)], reason)
                           for message, reason in self.sink.refusals(batch)]
            await self.dead_letter(rejected + refusals)

        while True:
            tracking = self.positions.tracking(tp, records[-1].offset)
            prepared.clear()
            try:
                batch = await self.writer.write_batch(self.sink, messages, tracking=tracking,
                                                      before_commit=dead_letter_refused)
                break
            except Exception as error:
                if not prepared:  # not even prepared: up to run(), which restarts the consumer
                    stalls.failed(Failure.of("consumer", where, event, error, lane=lane), cause=error)
                    raise
                batch = prepared[0]
                stored = await asyncio.to_thread(self.sink.position, tracking.application_name)
                if stored is not None and stored >= tracking.notification_id:
                    self.writer.written()
                    break  # it did commit; only the acknowledgement was lost
                self.metrics.errors.labels("commit").inc()
                stalls.failed(Failure.of("consumer", where, event, error, lane=lane), cause=error)
                log.exception("%s: batch at %s not committed; retrying in %.1fs",
                              self.service, where, backoff)
                if self._stopping.is_set():
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        stalls.moved("consumer", lane)
        stalls.moved("consumer", "")  # the consumer as a whole works again
        return batch, refusals

    async def dead_letter(self, rejected: list[Rejected]) -> None:
        """Publish rejected messages with their reason and origin; wait for the broker.

        A dead letter keeps at most ``DEADLETTER_ORIGINAL_BYTES`` of its original, so it
        fits any broker's usual limit. One the broker still refuses as too large is sent
        again with no original at all (its size and digest stay): that always fits, and a
        publish that can never succeed would hold up the partition for good.
        """
        if not rejected:
            return
        for item in rejected:
            record = item.record
            log.warning(
                "dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                item.reason[:1000],
            )
        results = await self._send_dead_letters(rejected, DEADLETTER_ORIGINAL_BYTES)
        too_large = [item for item, result in zip(rejected, results, strict=True)
                     if isinstance(result, TOO_LARGE)]
        failed = [result for result in results
                  if isinstance(result, BaseException) and not isinstance(result, TOO_LARGE)]
        if failed:
            raise failed[0]
        if too_large:
            log.error("the broker refused %d dead letters as too large; sending them without their "
                      "originals", len(too_large))
            for result in await self._send_dead_letters(too_large, 0):
                if isinstance(result, BaseException):
                    raise result

    async def _send_dead_letters(self, rejected: list[Rejected], keep: int) -> list[object]:
        """Send each dead letter; the broker's answers (or errors), in order."""

        async def send(item: Rejected) -> object:
            record = item.record
            future = await self.producer.send(
                DEADLETTER_TOPIC,
                key=record.key[:DEADLETTER_TEXT_CHARS] if record.key else None,
                value=deadletter_event(
                    self.service, record.value, record.topic, record.partition,
                    record.offset, item.reason, record.key, keep=keep,
                ),
            )
            return await future

        return await asyncio.gather(*(send(item) for item in rejected), return_exceptions=True)

    def _check_partition_ends(self) -> set[TopicPartition]:
        """A fetch answered with a high watermark below our position: the partition shrank
        (a broker that lost its data, a topic recreated). Start its new life at offset 0.

        The high watermark comes from a fetch at the current position (aiokafka drops
        answers for any other position) and is reset on every assignment. Returns the
        partitions sought back to 0."""
        consumer = self.consumer
        reset: set[TopicPartition] = set()
        if consumer is None:
            return reset
        for tp in consumer.assignment() & self._ready:
            highwater = consumer.highwater(tp)
            position = self.positions.next_offsets.get(tp)
            if highwater is not None and position is not None and highwater < position:
                self._reset_detected(tp, position, highwater)
                consumer.seek(tp, 0)
                self.metrics.position.labels(tp.topic, tp.partition).set(0)
                reset.add(tp)
        return reset

    def _update_lag(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self.positions.next_offsets.get(tp)
            if highwater is not None and position is not None:
                self.metrics.lag.labels(tp.topic, tp.partition).set(max(0, highwater - position))


def deadletter_event(
    service: str,
    original: bytes | None,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    reason: str,
    key: bytes | None = None,
    *,
    keep: int = DEADLETTER_ORIGINAL_BYTES,
) -> bytes:
    """The ``deadletter.rejected`` CloudEvent: the original bytes, where they came from, why.

    An original longer than ``keep`` bytes is cut there (``original_truncated``); its
    ``original_size`` and ``original_sha256`` always describe the whole of it, so the cut
    message can still be matched with the ERP's copy. A message without a key has no
    subject (CloudEvents allows no empty one).
    """
    original = original or b""
    # Deterministic ids: a dead letter written twice (a retried batch) dedupes downstream.
    if topic is not None:
        where = f"{topic}:{partition}:{offset}"
    else:
        where = "rest:" + hashlib.sha256(original).hexdigest()[:32]
    key_text = key.decode("utf-8", "replace")[:DEADLETTER_TEXT_CHARS] if key else None
    return encode_event(
        event_id=f"{service}:{where}",
        source=f"receivables/{service}",
        event_type="deadletter.rejected",
        subject=key_text or None,
        data={
            "original": base64.b64encode(original[:keep]).decode("ascii"),
            "original_size": len(original),
            "original_sha256": hashlib.sha256(original).hexdigest(),
            "original_truncated": len(original) > keep,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key_text,
            "reason": reason[:DEADLETTER_TEXT_CHARS],
        },
    )
