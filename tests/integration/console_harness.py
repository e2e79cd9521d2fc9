"""The console on a stack started by the test: the three services with the seeded book
(``stack_harness``), and the console under uvicorn on a free port of its own thread.

:func:`console_stack` gives both, with a tokens file that also holds a read-only token, so
that the services themselves refuse what the console must not offer it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from services.console.service import create_app
from services.console.settings import ConsoleSettings
from shared import testing
from shared.broker import create_topics, free_port
from shared.tokens import Scopes
from tests.integration.credit_harness import ALL_TOPICS as CREDIT_TOPICS
from tests.integration.dunning_harness import ALL_TOPICS as DUNNING_TOPICS
from tests.integration.ledger_harness import Publisher, read_topic, start_broker
from tests.integration.stack_harness import ALL_SCOPES_TOKEN, ServiceStack, seed_book

READER_TOKEN = "token-reader-only"
APPROVER_TOKEN = "token-approver"  # a credit manager: approves plans (four eyes with "tester")
SECRET = "console-secret-for-tests-0123456789abcdef"
WEBHOOK_SECRET = "provider-shared-secret"
START_S = 30.0

T = TypeVar("T")


class ConsoleServer:
    """The console app under uvicorn on a free port, on a thread with its own event loop."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> ConsoleServer:
        self._thread.start()
        wait_until(self._started, bool, what="the console's server started", timeout=START_S)
        return self

    def _started(self) -> bool:
        assert self._thread.is_alive(), "the console's server stopped while starting"
        return bool(self.server.started)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@dataclass
class ConsoleStack:
    stack: ServiceStack
    console: ConsoleServer
    settings: ConsoleSettings

    def api(self, service: str, path: str, token: str = ALL_SCOPES_TOKEN, **params: str) -> httpx.Response:
        return httpx.get(self.stack.urls[service] + path, params=params,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def browser_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.console.url, timeout=30, follow_redirects=False)


def write_tokens(path: Path) -> None:
    path.write_text(json.dumps({
        ALL_SCOPES_TOKEN: {"name": "tester", "scopes": sorted(Scopes.ALL)},
        READER_TOKEN: {"name": "reader",
                       "scopes": [Scopes.LEDGER_READ, Scopes.DUNNING_READ, Scopes.CREDIT_READ]},
        APPROVER_TOKEN: {"name": "manager",
                         "scopes": [Scopes.LEDGER_READ, Scopes.DUNNING_READ, Scopes.DUNNING_APPROVE]},
    }))


def console_settings(stack: ServiceStack, **overrides: object) -> ConsoleSettings:
    values: dict[str, object] = {
        "console_secret": SECRET, "api_tokens_file": stack.tokens, "console_token": ALL_SCOPES_TOKEN,
        "payment_webhook_secret": WEBHOOK_SECRET, "kafka_bootstrap": stack.broker.bootstrap,
        **{f"{name}_url": url for name, url in stack.urls.items()},
    }
    values.update(overrides)
    return ConsoleSettings(**values)  # type: ignore[arg-type]


@contextmanager
def console_stack(directory: Path) -> Iterator[ConsoleStack]:
    """A broker, the three services with the seeded book, and the console in front of them."""
    broker = start_broker(directory / "tansu.log")
    try:
        create_topics(broker.bootstrap, {**CREDIT_TOPICS, **DUNNING_TOPICS})
        stack = ServiceStack(broker, directory, seed_book)
        write_tokens(stack.tokens)  # read by the services when they start
        with stack:
            settings = console_settings(stack)
            with ConsoleServer(settings) as console:
                yield ConsoleStack(stack, console, settings)
    finally:
        broker.stop()


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    """Sign ``client`` in as a browser does: the form, its CSRF value, the post."""
    page = client.get("/sign-in")
    assert page.status_code == 200, page.text
    return client.post("/sign-in", data={"token": token, "csrf_token": form_csrf(page.text)})


def wait_until(probe: Callable[[], T], until: Callable[[T], bool], *, what: str, timeout: float = 30.0) -> T:
    """``probe()`` again until ``until`` holds of its value (``shared.testing.wait_until``, which
    polls with a deadline); fails naming ``what`` and the last value at the deadline."""
    seen: list[T] = []

    def reached() -> bool:
        seen[:] = [probe()]
        return until(seen[0])

    try:
        testing.wait_until(reached, timeout=timeout, what=what, interval=0.05)
    except AssertionError as failed:
        raise AssertionError(f"{failed}; last value {seen[0]!r}") from None
    return seen[0]


def publish(stack: ServiceStack, events: list[dict[str, Any]]) -> None:
    """Contract events onto their topics, from the services' loop."""
    async def send() -> None:
        async with Publisher(stack.broker.bootstrap) as publisher:
            await publisher.send_all(events)

    stack.run_in_loop(send())


def topic_records(stack: ServiceStack, topic: str,
                  until: Callable[[list[Any]], bool]) -> list[dict[str, Any]]:
    """The decoded events on ``topic`` once ``until`` holds of them."""
    def decoded(records: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(record.value) for record in records if record.value]

    reading = read_topic(stack.broker.bootstrap, topic, until=lambda rs: until(decoded(rs)), timeout=30)
    records = stack.run_in_loop(reading)
    return decoded(records)
