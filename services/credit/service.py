"""Assembles the credit service: event store, read models, Kafka loop, checks, reviews and REST
(the lifespan: ``shared.feed_service``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI

from services.credit import api_ratings, api_securities, api_warnings, followers
from services.credit.api import CREDIT_PROBLEMS, router
from services.credit.application import CreditApplication
from services.credit.check_desk import CheckDesk
from services.credit.check_fast_lane import CheckFastLane
from services.credit.reviews import ReviewRunner
from services.credit.settings import INBOUND_TOPICS, CreditSettings
from shared.auth import install_auth
from shared.db import migrate, read_models_url
from shared.feed_service import Started, feed_service_app, serve
from shared.ledger_predictions import Outlooks
from shared.problems import install_problem_handlers
from shared.runtime import tune_gc
from shared.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"
PREDICTIONS_TIMEOUT = 30.0  # seconds per request of the review's predictions


def migrate_read_models(database_url: str) -> None:
    """The read models' schema at head, wherever they are (``read_models_url``), given the
    service's database URL or theirs."""
    migrate(read_models_url(database_url), MIGRATIONS, "credit_alembic_version")


def _start_desk(app: FastAPI, started: Started[CreditApplication]) -> Callable[[], Awaitable[None]]:
    """The credit-check desk (stopped first); checks answer within ms: short GC pauses."""
    tune_gc(short_pauses=True)  # (after the runtime's own tuning)
    app.state.desk = desk = CheckDesk(started.application, started.runtime.writer, started.metrics)
    return desk.stop


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The credit service's ASGI app; its lifespan runs migrations and starts the background loops."""
    settings = CreditSettings.taking(settings, "credit")
    rules = settings.rules()
    # the review asks the ledger for a whole book's outlooks, 500 customers a request: more time
    # than a page's question gets
    outlooks = Outlooks(settings.ledger_url, settings.ledger_token, timeout=PREDICTIONS_TIMEOUT)
    app = feed_service_app(
        "credit", settings, application=lambda env: CreditApplication(env=env, rules=rules),
        read_models_url=read_models_url(settings.database_url), migrate=migrate_read_models,
        runner=lambda service, engine, writer: ReviewRunner(service, engine, writer, outlooks=outlooks),
        followers=followers, topics=INBOUND_TOPICS,
        run_at=settings.credit_review_at, zone=settings.credit_timezone,
        extra=_start_desk, about=f" (rules {rules.name} v{rules.version})")
    install_problem_handlers(app, CREDIT_PROBLEMS)
    install_auth(app, settings)
    if settings.credit_check_fast_lane:
        app.add_middleware(CheckFastLane)
    app.include_router(api_securities.router)
    app.include_router(api_ratings.router)
    app.include_router(api_warnings.router)
    return serve(app, router)
