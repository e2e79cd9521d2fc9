"""Assembles the dunning service: event store, read models, Kafka loop, runs and the REST app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from services.dunning import followers
from services.dunning.api import DUNNING_PROBLEMS, router
from services.dunning.application import DunningApplication
from services.dunning.runs import DunningRunner, daily_scheduler
from services.dunning.settings import INBOUND_TOPICS, DunningSettings, dunning_settings
from shared.auth import install_auth
from shared.db import make_engine, migrate
from shared.eventstore import eventsourcing_env
from shared.health import health
from shared.ledger_feed import decode_record
from shared.metrics import ServiceMetrics
from shared.openapi import document_problems
from shared.problems import install_problem_handlers
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate_read_models(database_url: str) -> None:
    migrate(database_url, MIGRATIONS, "dunning_alembic_version")


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The dunning service's ASGI app; its lifespan runs migrations and starts the background loops."""
    if settings is None:
        settings = dunning_settings()
    elif not isinstance(settings, DunningSettings):
        settings = DunningSettings(**settings.model_dump())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate_read_models, settings.database_url)
        dunning = DunningApplication(env=eventsourcing_env(settings.database_url))
        engine = make_engine(settings.database_url)
        metrics = ServiceMetrics("dunning")
        runtime = ServiceRuntime("dunning", settings.kafka_bootstrap, metrics)
        runner = DunningRunner(dunning, engine, runtime.write_lock, runtime.notify_followers)
        app.state.dunning, app.state.engine, app.state.runtime = dunning, engine, runtime
        app.state.runner, app.state.settings = runner, settings
        close_followers = runtime.consume(settings, followers, topics=INBOUND_TOPICS, decode=decode_record,
                                          sink=dunning)
        if settings.dunning_run_at is not None:
            runtime.supervise(daily_scheduler(runner, settings.dunning_run_at, settings.dunning_timezone),
                              "scheduler")
            log.info("daily dunning runs at %s %s", settings.dunning_run_at, settings.dunning_timezone)
        log.info("dunning started on %s with Kafka at %s",
                 make_url(settings.database_url).render_as_string(hide_password=True),
                 settings.kafka_bootstrap)
        try:
            yield
        finally:
            await runtime.stop()
            if close_followers is not None:
                close_followers()
            engine.dispose()
            dunning.close()

    app = FastAPI(title="receivables dunning", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app, DUNNING_PROBLEMS)
    install_auth(app, settings)
    app.include_router(router)
    app.include_router(health)
    document_problems(app)
    return app
