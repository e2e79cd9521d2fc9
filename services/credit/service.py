"""Assembles the credit service: event store, read models, Kafka loop, checks, reviews and REST."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from services.credit import followers
from services.credit.api import CREDIT_PROBLEMS, router
from services.credit.application import CreditApplication
from services.credit.check_desk import CheckDesk
from services.credit.check_fast_lane import CheckFastLane
from services.credit.reviews import ReviewRunner, daily_scheduler
from services.credit.settings import INBOUND_TOPICS, CreditSettings, credit_settings
from shared.auth import install_auth
from shared.db import make_engine, migrate, read_models_url
from shared.eventstore import eventsourcing_env
from shared.health import health
from shared.ledger_feed import decode_record
from shared.metrics import ServiceMetrics
from shared.openapi import document_problems
from shared.problems import install_problem_handlers
from shared.runtime import ServiceRuntime, tune_gc
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate_read_models(database_url: str) -> None:
    """The read models' schema at head, wherever they are (``read_models_url``), given the
    service's database URL or theirs."""
    migrate(read_models_url(database_url), MIGRATIONS, "credit_alembic_version")


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The credit service's ASGI app; its lifespan runs migrations and starts the background loops."""
    if settings is None:
        settings = credit_settings()
    elif not isinstance(settings, CreditSettings):
        settings = CreditSettings(**settings.model_dump())
    rules = settings.rules()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate_read_models, read_models_url(settings.database_url))
        credit = CreditApplication(env=eventsourcing_env(settings.database_url), rules=rules)
        engine = make_engine(read_models_url(settings.database_url))
        metrics = ServiceMetrics("credit")
        runtime = ServiceRuntime("credit", settings.kafka_bootstrap, metrics)
        tune_gc(short_pauses=True)  # (after the runtime's own tuning) checks answer within ms
        runner = ReviewRunner(credit, engine, runtime.write_lock, runtime.notify_followers)
        desk = CheckDesk(credit, runtime.write_lock, metrics, runtime.notify_followers)
        app.state.credit, app.state.engine, app.state.runtime = credit, engine, runtime
        app.state.runner, app.state.desk, app.state.settings = runner, desk, settings
        close_followers = runtime.consume(settings, followers, topics=INBOUND_TOPICS, decode=decode_record,
                                          sink=credit)
        if settings.credit_review_at is not None:
            runtime.supervise(daily_scheduler(runner, settings.credit_review_at, settings.credit_timezone),
                              "scheduler")
            log.info("daily credit reviews at %s %s", settings.credit_review_at, settings.credit_timezone)
        log.info("credit started on %s with Kafka at %s (rules %s v%d)",
                 make_url(settings.database_url).render_as_string(hide_password=True),
                 settings.kafka_bootstrap, rules.name, rules.version)
        try:
            yield
        finally:
            await desk.stop()
            await runtime.stop()
            if close_followers is not None:
                close_followers()
            engine.dispose()
            credit.close()

    app = FastAPI(title="receivables credit", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app, CREDIT_PROBLEMS)
    install_auth(app, settings)
    if settings.credit_check_fast_lane:
        app.add_middleware(CheckFastLane)
    app.include_router(router)
    app.include_router(health)
    document_problems(app)
    return app
