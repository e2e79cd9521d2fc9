"""Prometheus metrics of one service, in a registry of its own (several services may share
a process under ``receivables dev``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.stalls import Stalls


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.processed = Counter(
            "receivables_messages_processed", "Inbound messages applied", ["topic"], registry=r
        )
        self.duplicates = Counter(
            "receivables_messages_duplicate", "Inbound messages seen before (no effect)", ["topic"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "receivables_messages_deadlettered", "Messages sent to the dead-letter topic",
            ["topic"], registry=r,
        )
        self.events_stored = Counter(
            "receivables_events_stored", "Domain events written to the event store", registry=r
        )
        self.lag = Gauge(
            "receivables_consumer_lag", "Messages behind the partition's end", ["topic", "partition"],
            registry=r,
        )
        self.position = Gauge(
            "receivables_consumer_position", "Next offset to consume, as stored in the database",
            ["topic", "partition"], registry=r,
        )
        self.partition_resets = Counter(
            "receivables_partition_resets", "Partitions whose end offset fell below the stored position",
            ["topic", "partition"], registry=r,
        )
        self.batch_size = Histogram(
            "receivables_batch_size", "Messages per consumed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r,
        )
        self.batch_seconds = Histogram(
            "receivables_batch_seconds", "Time to process and commit one batch", registry=r
        )
        self.errors = Counter(
            "receivables_errors", "Errors that paused a loop (it retries)", ["stage"], registry=r
        )
        self.follower_position = Gauge(
            "receivables_follower_position", "Last notification processed by a follower",
            ["follower"], registry=r,
        )
        # receivables_stuck and receivables_stuck_seconds, per stage (shared.stalls)
        self.stalls = Stalls(registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
