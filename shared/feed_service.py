"""The assembly of a service that follows the ledger's feed and runs over its book daily
(dunning, credit): its ASGI app's lifespan.

On start: the read models migrated, the application on the event store, the read-models
engine, metrics and runtime, the daily runner (``shared.scheduling.BookRunner``), whatever
the service adds (``extra``), the followers and the Kafka consumer, the daily scheduler when
a time is set. On stop, the same undone in reverse. The app's state holds the application
under the service's name, and ``engine``, ``runtime``, ``runner`` and ``settings``.

The service itself installs what answers its requests (problem mapping, auth, middleware,
routes: ``serve``) on the app this returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import time
from functools import partial
from types import ModuleType
from typing import Generic, TypeVar

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.feed_application import FeedApplication
from shared.health import health
from shared.ledger_feed import decode_record
from shared.metrics import ServiceMetrics
from shared.openapi import document_problems
from shared.runtime import ServiceRuntime
from shared.scheduling import BookRunner, daily_scheduler
from shared.settings import ServiceSettings
from shared.store_writer import StoreWriter

App = TypeVar("App", bound=FeedApplication)  # type: ignore[type-arg]


@dataclass(frozen=True, slots=True)
class Started(Generic[App]):
    """What the lifespan built, for the service's ``extra`` parts."""

    application: App
    engine: Engine
    metrics: ServiceMetrics
    runtime: ServiceRuntime
    runner: BookRunner[App]


def feed_service_app(
    name: str, settings: ServiceSettings, *,
    application: Callable[[dict[str, str]], App],
    read_models_url: str, migrate: Callable[[str], None],
    runner: Callable[[App, Engine, StoreWriter], BookRunner[App]],
    followers: ModuleType, topics: Sequence[str],
    run_at: time | None, zone: str,
    extra: Callable[[FastAPI, Started[App]], Callable[[], Awaitable[None]] | None] | None = None,
    about: str = "",
) -> FastAPI:
    """The service's app, its lifespan assembled.

    ``application`` makes the application given its event-sourcing environment;
    ``read_models_url``: where the read models are (``migrate`` brings their schema to head);
    ``run_at`` (local time in ``zone``): when the daily run starts on its own, never if None;
    ``extra``: the service's own parts, started after the runner and before the consumer,
    returning what stops them (first, on stop); ``about``: added to the start's log line.
    """

    log = logging.getLogger(f"services.{name}.service")  # (the service's logger, as before)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, read_models_url)
        service = application(eventsourcing_env(settings.database_url))
        engine = make_engine(read_models_url)
        metrics = ServiceMetrics(name)
        runtime = ServiceRuntime(name, settings.kafka_bootstrap, metrics)
        book_runner = runner(service, engine, runtime.writer)
        setattr(app.state, name, service)
        app.state.engine, app.state.runtime = engine, runtime
        app.state.runner, app.state.settings = book_runner, settings
        stop_extra = extra(app, Started(service, engine, metrics, runtime, book_runner)) if extra else None
        close_followers = runtime.consume(settings, followers, topics=topics, sink=service,
                                          decode=partial(decode_record, reads=service.reads))
        if run_at is not None:
            runtime.supervise(daily_scheduler(book_runner, run_at, zone), "scheduler")
            log.info("daily %ss at %s %s", book_runner.what, run_at, zone)
        log.info("%s started on %s with Kafka at %s%s", name,
                 make_url(settings.database_url).render_as_string(hide_password=True),
                 settings.kafka_bootstrap, about)
        try:
            yield
        finally:
            if stop_extra is not None:
                await stop_extra()
            await runtime.stop()
            if close_followers is not None:
                close_followers()
            engine.dispose()
            service.close()

    return FastAPI(title=f"receivables {name}", version="0.1.0", lifespan=lifespan)


def serve(app: FastAPI, router: APIRouter) -> FastAPI:
    """The service's routes and the health routes on ``app``, its problems documented."""
    app.include_router(router)
    app.include_router(health)
    document_problems(app)
    return app
