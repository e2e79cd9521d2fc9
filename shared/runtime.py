"""What runs inside one service process besides the HTTP server: the Kafka producer, the
consumer loop, and the notification-log followers (projections, outbox), each supervised so
that an outage pauses it and it resumes by itself. The followers may instead run in a
child process (``followers_process``, see ``shared.worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import ModuleType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from shared.child_process import die_with_parent
from shared.follower import Follower, FollowerLoop, SharedLog
from shared.leadership import Leadership
from shared.metrics import ServiceMetrics
from shared.settings import ServiceSettings
from shared.stalls import Failure, StallReporter
from shared.store_writer import StoreWriter

log = logging.getLogger(__name__)


class KafkaLink:
    """A producer started in the background, retried until the broker answers."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1_048_576,
            request_timeout_ms=10_000,
        )
        self.connected = asyncio.Event()

    async def connect(self, stopping: asyncio.Event) -> None:
        backoff = 0.2
        while not stopping.is_set():
            try:
                await self.producer.start()
                self.connected.set()
                return
            except Exception as error:
                log.warning("Kafka at %s not reachable (%s); retrying", self.bootstrap, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    async def reachable(self, timeout: float = 2.0) -> bool:
        if not self.connected.is_set():
            return False
        try:
            return bool(await asyncio.wait_for(self.producer.client.force_metadata_update(), timeout))
        except Exception:
            return False

    async def close(self) -> None:
        if self.connected.is_set():
            with contextlib.suppress(Exception):
                await self.producer.stop()


def tune_gc(*, short_pauses: bool = False) -> None:
    """Make full garbage collections rare.

    A service holds a large and growing heap of long-lived objects (the cached aggregates);
    with CPython's default thresholds every growth by a quarter triggers a full collection
    that walks all of it: a third of the ledger's ingest CPU at 300,000 events. Young
    cyclic garbage is still collected as usual.

    ``short_pauses``: for a service answering within milliseconds (credit checks), young
    collections kept small. One pauses the process about half a microsecond an object it
    walks: a young generation of 100,000 objects stopped checks for 40 ms; of 10,000, 5 ms.
    (The ledger's ingest ran 15% slower with these, so it keeps the larger ones.)
    """
    gc.set_threshold(*((10_000, 2, 5_000) if short_pauses else (100_000, 50, 100)))


class ServiceRuntime:
    """Starts and stops a service's background loops."""

    def __init__(
        self, service: str, bootstrap: str, metrics: ServiceMetrics, *,
        on_progress: Callable[[str, int], None] | None = None,
        stalls: StallReporter | None = None,
    ) -> None:
        tune_gc()
        self.service = service
        self.metrics = metrics
        self.kafka = KafkaLink(bootstrap)
        self.writer = StoreWriter(on_written=self.notify_followers)  # the one way into the event store
        self.followers: list[FollowerLoop] = []
        self.consumers: list[Any] = []  # shared.consumer.KafkaConsumerLoop
        self._logs: list[SharedLog] = []  # one per followed application, read once for all
        self.worker: FollowerWorker | None = None  # when the followers run apart
        self._on_progress = on_progress
        self.stalls: StallReporter = stalls or metrics.stalls  # where the followers tell their failures
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()
        self._stoppers: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def follow(
        self, follower: Follower, *, needs_kafka: bool = False, leadership: Leadership | None = None
    ) -> FollowerLoop:
        log = next((log for log in self._logs if log.app is follower.app), None)
        if log is None:
            log = SharedLog(follower.app)
            self._logs.append(log)
        loop = FollowerLoop(follower, self.metrics, on_progress=self._on_progress, stalls=self.stalls,
                            leadership=leadership, log=log)
        self.followers.append(loop)
        self._stoppers.append(loop.stop)
        self._spawn(loop.run(), follower.name, needs_kafka=needs_kafka)
        return loop

    def followers_process(self, module: str, settings: ServiceSettings) -> None:
        """Run the followers that ``module``'s ``start()`` registers in a child process."""
        self.worker = FollowerWorker(module, settings, self.metrics)
        self.supervise(self.worker, "followers-process")

    def consume(
        self, settings: ServiceSettings, followers: ModuleType, *, topics: Sequence[str],
        decode: Callable[[Any], Any], sink: Any,
    ) -> Callable[[], None] | None:
        """A service's usual start: its followers (``followers.start``, in a child process or
        inline as ``settings.followers`` says) and the Kafka consumer feeding ``sink``, which
        wakes them after each commit. Returns what closes inline followers' resources."""
        from shared.consumer import KafkaConsumerLoop

        self.metrics.stalls.stuck_after = settings.stuck_after_seconds
        close_followers = None
        if settings.followers == "process":
            self.followers_process(followers.__name__, settings)
            self.start_kafka()
        else:
            close_followers = followers.start(settings, self)
        consumer: KafkaConsumerLoop[Any, Any] = KafkaConsumerLoop(
            service=self.service, bootstrap=settings.kafka_bootstrap,
            group_id=settings.consumer_group or f"receivables-{self.service}", topics=topics,
            decode=decode, sink=sink, producer=self.kafka.producer, metrics=self.metrics,
            writer=self.writer, max_records=settings.batch_max_records,
            timeout_ms=settings.batch_timeout_ms, session_timeout_ms=settings.session_timeout_ms,
        )
        self.consumers.append(consumer)
        self.supervise(consumer, "consumer", needs_kafka=True)
        return close_followers

    def broker_lost(self) -> None:
        """The broker lost its data (an embedded broker restarting): see ``KafkaConsumerLoop.broker_lost``."""
        for consumer in self.consumers:
            consumer.broker_lost()

    def notify_followers(self) -> None:
        for loop in self.followers:
            loop.notify()
        if self.worker is not None:
            self.worker.notify()

    def start_kafka(self) -> None:
        self._tasks.append(asyncio.create_task(self.kafka.connect(self._stopping), name="kafka-connect"))

    def supervise(self, runner: Any, name: str, *, needs_kafka: bool = False) -> None:
        """Run a loop with ``run()``/``stop()`` (the consumer), after Kafka if it needs it."""
        self._stoppers.append(runner.stop)
        self._spawn(runner.run(), name, needs_kafka=needs_kafka)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str, *, needs_kafka: bool = False) -> None:
        async def guarded() -> None:
            if needs_kafka:
                await self.kafka.connected.wait()
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s stopped unexpectedly", self.service, name)

        self._tasks.append(asyncio.create_task(guarded(), name=f"{self.service}-{name}"))

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for stop in self._stoppers:
            with contextlib.suppress(Exception):
                await stop()
        _done, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.kafka.close()

    @property
    def tasks(self) -> Sequence[asyncio.Task[Any]]:
        return self._tasks


class FollowerWorker:
    """The parent's handle on the followers' child process: start, wake, supervise, stop."""

    def __init__(self, module: str, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self.module = module
        self.settings = settings
        self.metrics = metrics
        self.started = 0  # child processes started so far
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def notify(self) -> None:
        """Wake the followers: new events are committed."""
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(b"\n")

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            # Forked by the event loop's thread, which lives as long as the service: the
            # parent-death signal kills the child at once if the service is killed hard
            # (end of input alone would let it shut down slowly against a broker that is gone).
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared.worker", self.module,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                preexec_fn=die_with_parent(),
            )
            self._process = process
            self.started += 1
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(self.settings.model_dump_json().encode() + b"\n")
            await self._read_reports(process.stdout)
            code = await process.wait()
            self._process = None
            if self._stopping.is_set():
                return
            self.metrics.errors.labels("followers-process").inc()
            # a child that keeps dying (on an event it cannot get past) is a stall too
            self.metrics.stalls.failed(Failure("followers-process", "", None, "ProcessExited",
                                               f"the followers process exited with {code}"))
            log.error("%s followers process exited with %s; restarting in %.1fs",
                      self.module, code, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 10.0)

    async def _read_reports(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("followers process wrote %r", line[:200])
                continue
            if "position" in report:
                self.metrics.follower_position.labels(report["follower"]).set(report["position"])
            elif "error" in report:
                self.metrics.errors.labels(report["error"]).inc()
                self.metrics.stalls.failed(Failure.from_report(report))
            elif "recovered" in report:
                self.metrics.stalls.moved(report["recovered"])

    async def stop(self, timeout: float = 10.0) -> None:
        """Close the child's input (it finishes its batch and exits); kill it if it hangs."""
        self._stopping.set()
        process = self._process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            log.warning("followers process did not stop within %.0fs; killing it", timeout)
            process.kill()
            await process.wait()
