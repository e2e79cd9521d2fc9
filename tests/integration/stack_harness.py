"""The three services at once, for tests that drive them from plain (synchronous) code.

:class:`ServiceStack` runs the ledger, dunning and credit apps under uvicorn in an event
loop of their own, on a background thread, so that a synchronous client (a schema fuzzer,
``requests``) can call them while they go on consuming Kafka. Every service takes the
same tokens file; :data:`ALL_SCOPES_TOKEN` holds every scope there is.

:func:`seed_book` gives the services something to answer about: one customer with a limit,
an overdue invoice under partial dispute, a paid one, a dunning run with its notice, a
manual hold, a credit check and a review.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from services.credit.settings import CreditSettings
from services.dunning.settings import DunningSettings
from shared.broker import EmbeddedBroker, create_topics
from shared.settings import ServiceSettings
from shared.tokens import Scopes
from tests.integration.credit_harness import ALL_TOPICS as CREDIT_TOPICS
from tests.integration.credit_harness import InProcessCredit
from tests.integration.dunning_harness import ALL_TOPICS as DUNNING_TOPICS
from tests.integration.dunning_harness import InProcessDunning, profile
from tests.integration.ledger_harness import (
    SESSION_TIMEOUT_MS,
    InProcessApp,
    InProcessLedger,
    Publisher,
    dispute_opened,
    invoice_issued,
    payment_received,
    poll,
    start_broker,
)

ALL_SCOPES_TOKEN = "token-all-scopes"
WAIT = 60.0

T = TypeVar("T")


def write_all_scopes_tokens(directory: Path) -> Path:
    """A tokens file with one token holding every scope (identity ``tester``)."""
    path = directory / "tokens.json"
    path.write_text(json.dumps({ALL_SCOPES_TOKEN: {"name": "tester", "scopes": sorted(Scopes.ALL)}}))
    return path


def stack_settings(service: str, bootstrap: str, directory: Path, tokens: Path) -> ServiceSettings:
    """Settings of one service of the stack: SQLite under ``directory``, followers inline."""
    kind: type[ServiceSettings] = {"dunning": DunningSettings, "credit": CreditSettings}.get(
        service, ServiceSettings)
    return kind.for_service(
        service, kafka_bootstrap=bootstrap, database_url=f"sqlite:///{directory / service}.db",
        api_tokens_file=tokens, session_timeout_ms=SESSION_TIMEOUT_MS, followers="inline",
        consumer_group=f"stack-{service}-{directory.name}",
    )


@dataclass
class Seeded:
    """The ids the seeded book holds, for requests that should find something."""

    customer_id: str = "C-SEED"
    invoice_id: str = "INV-SEED-1"
    paid_invoice_id: str = "INV-SEED-2"
    hold_id: str = ""
    policy: str = "default"
    as_of: str = "2024-03-15"


Seeder = Callable[["ServiceStack"], Awaitable[None]]


class ServiceStack:
    """Ledger, dunning and credit on a thread of their own (``with ServiceStack(...) as stack``).

    ``urls`` maps each service to its base URL once started; ``seed`` runs in the stack's
    loop before the stack counts as started.
    """

    def __init__(self, broker: EmbeddedBroker, directory: Path, seed: Seeder | None = None) -> None:
        self.broker = broker
        self.directory = directory
        self.tokens = write_all_scopes_tokens(directory)
        self.seed = seed
        self.apps: dict[str, InProcessApp] = {}
        self.urls: dict[str, str] = {}
        self.seeded = Seeded()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="service-stack", daemon=True)

    def __enter__(self) -> ServiceStack:
        self._thread.start()
        deadline = time.monotonic() + 3 * WAIT
        while not self._ready.wait(timeout=0.1):
            if not self._thread.is_alive():
                break
            assert time.monotonic() < deadline, "the service stack did not start in time"
        if self._error is not None:
            raise AssertionError("the service stack failed to start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def run_in_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """``coroutine`` run in the services' loop (what they hold belongs to it)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ALL_SCOPES_TOKEN}"}

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        bootstrap = self.broker.bootstrap
        apps = (
            InProcessLedger(stack_settings("ledger", bootstrap, self.directory, self.tokens)),
            InProcessDunning(stack_settings("dunning", bootstrap, self.directory, self.tokens)),  # type: ignore[arg-type]
            InProcessCredit(stack_settings("credit", bootstrap, self.directory, self.tokens)),  # type: ignore[arg-type]
        )
        async with apps[0] as ledger, apps[1] as dunning, apps[2] as credit:
            self.apps = {"ledger": ledger, "dunning": dunning, "credit": credit}
            for app in self.apps.values():
                app.http.headers.update(self.headers())
            self.urls = {name: app.base_url for name, app in self.apps.items()}
            if self.seed is not None:
                await self.seed(self)
            self._ready.set()
            await self._stop.wait()


@contextmanager
def seeded_stack(directory: Path) -> Iterator[ServiceStack]:
    """A broker of its own with every topic, and the three services on it with :func:`seed_book`."""
    broker = start_broker(directory / "tansu.log")
    try:
        create_topics(broker.bootstrap, {**CREDIT_TOPICS, **DUNNING_TOPICS})
        with ServiceStack(broker, directory, seed_book) as stack:
            yield stack
    finally:
        broker.stop()


async def _json(response: Any, status: int) -> Any:
    assert response.status_code == status, (response.request.url, response.status_code, response.text)
    return response.json()


async def seed_book(stack: ServiceStack) -> None:
    """One customer's book in every service (see the module's docstring)."""
    seeded = stack.seeded
    customer, overdue, paid = seeded.customer_id, seeded.invoice_id, seeded.paid_invoice_id
    async with Publisher(stack.broker.bootstrap) as publisher:
        await publisher.send_all([
            profile(customer, event_id="seed-profile", credit_limit={"currency": "EUR", "amount": "1000.00"}),
            invoice_issued(customer, overdue, "1500.00", issue="2024-01-01", due="2024-01-31"),
            invoice_issued(customer, paid, "200.00", issue="2024-01-05", due="2024-02-04"),
            payment_received(customer, "PAY-SEED", "200.00", received="2024-01-20",
                             allocations=[(paid, "200.00")]),
            dispute_opened(customer, "DSP-SEED", overdue, "100.00", opened="2024-02-10"),
        ])
    ledger, dunning, credit = (stack.apps[name] for name in ("ledger", "dunning", "credit"))

    async def invoice_seen() -> bool:
        response = await ledger.get(f"/invoices/{paid}")
        return response.status_code == 200 and response.json()["status"] == "paid"

    await poll(invoice_seen, bool, timeout=WAIT, what="the ledger has the seeded invoices")

    async def dunning_view() -> Any:
        response = await dunning.get(f"/customers/{customer}/dunning")
        return response.json() if response.status_code == 200 else None

    await poll(dunning_view, lambda view: view is not None and [
        (i["invoice_id"], i["disputed_amount"]) for i in view["invoices"]] == [(overdue, "100.00")],
        timeout=WAIT, what="dunning knows the open invoice and its dispute")

    async def credit_view() -> Any:
        response = await credit.http.get(f"/customers/{customer}/credit", params={"currency": "EUR"})
        return response.json() if response.status_code == 200 else None

    await poll(credit_view, lambda view: view is not None and view["exposure"] == "1500.00"
               and view["limit"] == "1000.00", timeout=WAIT, what="credit knows the exposure and limit")

    run = await _json(await dunning.http.post("/runs", json={"as_of": seeded.as_of}), 200)
    assert run["notices"], run
    hold = await _json(await credit.http.post(f"/customers/{customer}/holds", json={"reason": "seeded"}), 201)
    seeded.hold_id = hold["hold_id"]
    await _json(await credit.http.post("/credit-checks", json={
        "customer_id": customer, "order_id": "ORD-SEED", "amount": "10.00", "currency": "EUR",
        "on": seeded.as_of}), 200)
    await _json(await credit.http.post("/reviews", json={"as_of": seeded.as_of}), 200)

    async def hold_listed() -> Any:
        return (await credit.http.get("/holds")).json()

    await poll(hold_listed, lambda body: bool(body.get("holds")), timeout=WAIT,
               what="GET /holds lists the hold")
