"""``receivables dev`` as an operator runs it: a real process with its broker and services.

- its embedded broker killed, it starts another on the same port and messages flow again;
- itself killed with SIGKILL, nothing it started lives on, and it starts again at once;
- a broker left over by a hard-killed run of an older version is named, with its pid;
- the supervisor gives up, loudly, on a broker that cannot be started again or keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import pytest

from shared.broker import BrokerError, BrokerSupervisor, EmbeddedBroker, free_port, resolve_tansu_binary
from tests.integration.ledger_harness import (
    REPO_ROOT,
    LedgerClient,
    Publisher,
    alive,
    child_pids,
    invoice_issued,
    poll,
    read_topic,
)

READY_S = 60.0  # three services, their migrations and followers on a busy 2-core machine
RECOVERY_S = 30.0  # the bound: a killed broker to messages applied again


def free_port_block(count: int) -> int:
    """A port ``base`` with ``base + 1 .. base + count`` free at the time of the call."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        try:
            for offset in range(1, count + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports found")


def descendants(pid: int) -> list[int]:
    """Every running process below ``pid`` (children, their children, ...)."""
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in child_pids(parent)]
        found += children
        frontier = children
    return found


def argv_of(pid: int) -> list[str]:
    """The command line of ``pid``; ``[""]`` once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return [""]


class DevStack:
    """``python -m services.cli dev`` on free ports, its output in a log file."""

    def __init__(
        self, tmp_path: Path, *, kafka_port: int | None = None, base_port: int | None = None
    ) -> None:
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "dev.log"
        self.kafka_port = kafka_port or free_port()
        self.base_port = base_port or free_port_block(3)
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.ledger = LedgerClient(f"http://127.0.0.1:{self.base_port + 1}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()  # every process of the stack we saw, killed if left at the end

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVABLES_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "dev", "--data-dir", str(self.data_dir),
                 "--kafka-port", str(self.kafka_port), "--base-port", str(self.base_port)],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = READY_S) -> None:
        """Until it printed its URLs and its broker and three followers processes run."""
        async def probe() -> tuple[bool, int | None, int]:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"receivables dev exited with {self.proc.returncode}\n{self.log()[-4000:]}"
                )
            return "Ctrl-C stops everything." in self.log(), self.broker_pid(), len(self.followers())

        await poll(probe, lambda state: state[0] and state[1] is not None and state[2] == 3,
                   timeout=timeout, what="receivables dev ready (URLs printed, broker and followers up)")
        self.seen.update(self.processes())

    def processes(self) -> list[int]:
        assert self.proc is not None
        return descendants(self.proc.pid)

    def broker_pid(self) -> int | None:
        brokers = [pid for pid in self.processes() if "tansu" in Path(argv_of(pid)[0]).name]
        assert len(brokers) <= 1, brokers
        return brokers[0] if brokers else None

    def followers(self) -> list[int]:
        return [pid for pid in self.processes() if "shared.worker" in argv_of(pid)]

    async def __aenter__(self) -> Self:
        self.start()
        await self.wait_ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ledger.close()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.seen.update(self.processes())
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self.seen:  # only if the stack failed to take them along
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_a_killed_broker_is_started_again_and_messages_are_applied_again(tmp_path: Path) -> None:
    async with DevStack(tmp_path) as dev:
        # two invoices: the customer's partition stands at offset 2 before the broker dies
        async with Publisher(dev.bootstrap) as publisher:
            for invoice in ("DEV-1", "DEV-2"):
                await publisher.send(invoice_issued("CUST-DEV", invoice, "100.00"))
        await poll(lambda: dev.ledger.invoice("DEV-2"), lambda found: found is not None, timeout=READY_S,
                   what="invoices published before the broker dies applied")

        first_broker = dev.broker_pid()
        assert first_broker is not None
        os.kill(first_broker, signal.SIGKILL)
        killed = time.monotonic()

        # dev says so once, and is back on the same port with its topics
        await poll(lambda: asyncio.to_thread(dev.log), lambda log: "embedded broker back on" in log,
                   timeout=RECOVERY_S, what="the broker started again")
        second_broker = dev.broker_pid()
        assert second_broker not in (None, first_broker)
        dev.seen.add(second_broker or 0)
        # as many new messages as the partition held, and more, published at once: without
        # being told of the restart the consumer could take the refilled partition for the
        # old one and skip them
        async with Publisher(dev.bootstrap) as publisher:
            for invoice in ("DEV-3", "DEV-4", "DEV-5"):
                await publisher.send(invoice_issued("CUST-DEV", invoice, "30.00"))
        for invoice_id in ("DEV-3", "DEV-4", "DEV-5"):
            invoice = await poll(lambda i=invoice_id: dev.ledger.invoice(i), lambda found: found is not None,
                                 timeout=max(1.0, RECOVERY_S - (time.monotonic() - killed)),
                                 what=f"invoice {invoice_id} published after the broker died applied")
            assert invoice is not None and invoice["open_amount"] == "30.00"
        assert time.monotonic() - killed < RECOVERY_S
        # the ledger's outbox publishes to the new broker too
        await read_topic(dev.bootstrap, "ar.ledger.events", timeout=RECOVERY_S,
                         until=lambda records: any(b"DEV-3" in r.value for r in records if r.value))

        log = dev.log()
        assert log.count("EMBEDDED BROKER DIED") == 1, log[-4000:]
        assert "was killed by SIGKILL" in log
        assert "PARTITION RESET" in log  # the ledger's consumer went through the reset
        assert dev.proc is not None and dev.proc.poll() is None


async def test_sigkill_leaves_no_process_behind_and_dev_starts_again_at_once(tmp_path: Path) -> None:
    async with DevStack(tmp_path) as dev:
        assert dev.proc is not None
        broker = dev.broker_pid()
        stack = dev.processes()
        assert broker in stack and len(dev.followers()) == 3

        os.kill(dev.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(dev.proc.wait, 10)
        await poll(lambda: asyncio.to_thread(lambda: [pid for pid in stack if alive(pid)]),
                   lambda left: not left, timeout=10, what="every process of the killed dev gone")

    # same ports, same data directory: nothing holds them any more
    again = DevStack(tmp_path, kafka_port=dev.kafka_port, base_port=dev.base_port)
    async with again:
        async with Publisher(again.bootstrap) as publisher:
            await publisher.send(invoice_issued("CUST-AGAIN", "AGAIN-1", "12.50"))
        await poll(lambda: again.ledger.invoice("AGAIN-1"), lambda found: found is not None,
                   timeout=RECOVERY_S, what="an invoice applied by the dev started again")
    assert "already listening" not in again.log()


def test_a_broker_left_over_by_a_hard_killed_run_is_named(tmp_path: Path) -> None:
    port = free_port()
    # What older versions left behind: a broker in a session of its own whose parent died
    # without stopping it (os._exit skips the atexit hook, as SIGKILL would).
    orphan_maker = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\nfrom pathlib import Path\n"
         "from shared.broker import EmbeddedBroker\n"
         f"broker = EmbeddedBroker({port}, log_path=Path(sys.argv[1]))\n"
         "broker.start()\n"
         "print(broker.pid, flush=True)\n"
         "os._exit(0)\n",
         str(tmp_path / "orphan.log")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    orphan = int(orphan_maker.stdout.split()[-1])
    try:
        assert alive(orphan)
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "dev", "--data-dir", str(tmp_path / "data"),
             "--kafka-port", str(port), "--base-port", str(free_port_block(3))],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 1
        assert f"a Tansu broker (pid {orphan}) is already listening on 127.0.0.1:{port}" in result.stderr
        assert f"kill {orphan}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


# --------------------------------------------------------------------------- the supervisor's limits


def wrapped_broker(tmp_path: Path, *, runs: int) -> Path:
    """A broker binary that is the real one for its first *runs* starts, then fails."""
    script = tmp_path / "tansu-wrapper"
    count = tmp_path / "starts"
    script.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -gt {runs} ]; then echo "boom: no more starts"; exit 3; fi\n'
        f'exec "{resolve_tansu_binary()}" "$@"\n'
    )
    script.chmod(0o755)
    return script


async def test_the_supervisor_gives_up_on_a_broker_that_cannot_start_again(tmp_path: Path) -> None:
    binary = wrapped_broker(tmp_path, runs=1)
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "broker.log", binary=binary)
    supervisor = BrokerSupervisor(broker, {"ar.invoices": 4}, attempts=2)
    await supervisor.start()
    watching = asyncio.create_task(supervisor.run())
    try:
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        with pytest.raises(BrokerError, match=r"(?s)could not be started again.*boom: no more starts"):
            await asyncio.wait_for(watching, timeout=RECOVERY_S)
        assert supervisor.restarts == 0
    finally:
        supervisor.stop()
        broker.stop()


async def test_the_supervisor_gives_up_on_a_broker_that_keeps_dying(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "broker.log")
    supervisor = BrokerSupervisor(broker, {"ar.invoices": 4}, max_restarts=1)
    await supervisor.start()
    watching = asyncio.create_task(supervisor.run())
    try:
        first = broker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await poll(lambda: asyncio.sleep(0, supervisor.restarts), lambda restarts: restarts == 1,
                   timeout=RECOVERY_S, what="the broker started again once")
        assert broker.pid not in (None, first) and broker.is_running
        os.kill(broker.pid or 0, signal.SIGKILL)
        with pytest.raises(BrokerError, match="died 2 times within 60s: giving up"):
            await asyncio.wait_for(watching, timeout=RECOVERY_S)
    finally:
        supervisor.stop()
        broker.stop()


async def test_a_broker_that_dies_with_its_parent_is_only_forked_by_the_main_thread() -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* ends: a worker thread would take it along.
    broker = EmbeddedBroker(free_port(), die_with_parent=True)
    with pytest.raises(BrokerError, match="spawned from the main thread"):
        await asyncio.to_thread(broker.spawn)
    assert not broker.is_running


async def test_dev_serves_the_console_on_the_base_port_with_a_secret_of_its_data_dir(tmp_path: Path) -> None:
    async with DevStack(tmp_path) as dev:
        assert f"console    http://127.0.0.1:{dev.base_port}" in dev.log()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dev.base_port}", timeout=10) as client:
            assert (await client.get("/health/ready")).status_code == 200
            sign_in = await client.get("/sign-in")
            assert sign_in.status_code == 200 and 'name="token"' in sign_in.text
        secret = dev.data_dir / "console-secret"
        assert secret.stat().st_mode & 0o077 == 0 and len(secret.read_text()) >= 32
