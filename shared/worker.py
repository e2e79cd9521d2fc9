"""A service's notification-log followers (projections, outbox) in a process of their own.

Why: the consumer (decode, domain, event-store write) and the followers (read the log,
project, publish) each need most of a core of Python at full ingest, and one process
has one GIL. The followers only talk to the database and Kafka and keep their own
positions there, so a child process runs them with nothing shared but the store.

The parent and the child talk over the child's standard streams, one line each:

- parent → child stdin: the settings (one JSON line), then an empty line whenever the
  consumer committed (wake up now rather than at the next idle poll). End of input tells
  the child to stop; if the parent dies, even by SIGKILL, the kernel kills the child
  (``shared.child_process``): no orphans.
- child → parent stdout: ``{"follower": name, "position": n}`` after each batch;
  ``{"error": name, "where": ..., "event": {...}, "type": ..., "message": ...}`` when a
  follower failed (``shared.stalls.Failure``), and ``{"recovered": name}`` when it moves
  again. The parent mirrors them into its metrics and its stalls, so that ``/metrics`` and
  ``/health/ready`` show the followers like any other part of the service.

The child's log goes to the parent's stderr. The parent restarts a child that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable

import orjson

from shared.child_process import die_with_parent
from shared.metrics import ServiceMetrics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.stalls import Failure

log = logging.getLogger(__name__)

# A followers module defines ``start(settings, runtime)``: it builds its application and
# registers its followers on the runtime, and returns what to close after they stop.
Start = Callable[[ServiceSettings, ServiceRuntime], Callable[[], None]]


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


# ------------------------------------------------------------------------ the child side


async def _child(module: str) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    settings = ServiceSettings.model_validate_json(await stdin.readline())
    start: Start = importlib.import_module(module).start

    def report(message: dict[str, object]) -> None:
        sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
        sys.stdout.buffer.flush()

    runtime = ServiceRuntime(
        settings.service_name or module, settings.kafka_bootstrap,
        ServiceMetrics(settings.service_name or module),
        on_progress=lambda name, position: report({"follower": name, "position": position}),
        stalls=_ReportedStalls(report),
    )
    close = start(settings, runtime)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)

    async def wake_on_input() -> None:
        while await stdin.readline():
            runtime.notify_followers()
        stopped.set()  # the parent closed our input or died

    reader = asyncio.create_task(wake_on_input())
    await stopped.wait()
    reader.cancel()
    await runtime.stop()
    close()


class _ReportedStalls:
    """The child's followers tell their failures and recoveries to the parent."""

    def __init__(self, report: Callable[[dict[str, object]], None]) -> None:
        self.report = report

    def failed(self, failure: Failure, *, cause: BaseException | None = None) -> None:
        self.report(failure.as_report())

    def moved(self, stage: str, lane: str | None = None) -> None:
        self.report({"recovered": stage})


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[followers]: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Ctrl-C reaches the whole process group; the parent decides when the followers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_child(argv[0]))
    else:
        uvloop.run(_child(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
