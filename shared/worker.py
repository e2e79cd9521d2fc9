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

The child's log goes to the parent's stderr. The parent restarts a child that died. This
module is the child (``python -m shared.worker <followers module>``); the parent's handle on
it is ``shared.runtime.FollowerWorker``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable

import orjson

from shared.metrics import ServiceMetrics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.stalls import Failure

# A followers module defines ``start(settings, runtime)``: it builds its application and
# registers its followers on the runtime, and returns what to close after they stop.
Start = Callable[[ServiceSettings, ServiceRuntime], Callable[[], None]]


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
