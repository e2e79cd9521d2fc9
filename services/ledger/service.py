"""Assembles the ledger service: event store, read models, Kafka loops and the REST app."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from services.ledger import followers
from services.ledger.api import (
    LEDGER_PROBLEMS,
    accounts,
    advance_receipts,
    audit,
    intake,
    predictions,
    replays,
    reports,
)
from services.ledger.application import LedgerApplication
from services.ledger.predictions.schedule import DailyTraining
from services.ledger.read.schema import migrate_read_models
from services.ledger.settings import INBOUND_TOPICS, LedgerSettings
from shared.auth import install_auth
from shared.db import make_engine
from shared.erp_events import DEFAULT_LIMITS, InboundMessage, Limits, decode_message
from shared.eventstore import eventsourcing_env
from shared.health import health
from shared.hot_reads import HotReads
from shared.metrics import ServiceMetrics
from shared.openapi import document_problems
from shared.problems import install_problem_handlers
from shared.runtime import ServiceRuntime
from shared.scheduling import DailyScheduler
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

def decode_record(record: ConsumerRecord[bytes, bytes], limits: Limits = DEFAULT_LIMITS) -> InboundMessage:
    return decode_message(
        record.value, topic=record.topic, partition=record.partition, offset=record.offset,
        key=record.key, limits=limits,
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The ledger's ASGI app; its lifespan runs migrations and starts the background loops."""
    settings = LedgerSettings.taking(settings, "ledger")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate_read_models, settings.database_url)
        ledger = LedgerApplication(env=eventsourcing_env(settings.database_url))
        engine = make_engine(settings.database_url)
        app.state.reads = reads = HotReads(engine)
        metrics = ServiceMetrics("ledger")
        runtime = ServiceRuntime("ledger", settings.kafka_bootstrap, metrics)
        app.state.ledger, app.state.engine, app.state.runtime = ledger, engine, runtime
        app.state.settings = settings
        app.state.limits = limits = Limits(max_amount=settings.max_amount)
        close_followers = runtime.consume(settings, followers, topics=INBOUND_TOPICS,
                                          decode=functools.partial(decode_record, limits=limits), sink=ledger)
        train_at, zone = settings.ledger_train_at, settings.ledger_train_timezone
        if train_at is not None:
            training = DailyTraining(engine, train_at, zone)
            runtime.supervise(DailyScheduler(training, train_at, zone, what=training.what,
                                             describe=training.describe), "training")
            log.info("daily model training at %s %s", train_at, zone)
        log.info("ledger started on %s with Kafka at %s", _redact(settings.database_url),
                 settings.kafka_bootstrap)
        try:
            yield
        finally:
            await runtime.stop()
            if close_followers is not None:
                close_followers()
            await reads.close()
            engine.dispose()
            ledger.close()

    app = FastAPI(title="receivables ledger", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app, LEDGER_PROBLEMS)
    install_auth(app, settings)
    for routes in (accounts, intake, reports, advance_receipts, predictions, audit, replays):
        app.include_router(routes.router)
    app.include_router(health)
    document_problems(app)
    return app


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
