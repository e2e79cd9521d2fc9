"""Assembles the dunning service: event store, read models, Kafka loop, runs and the REST app
(the lifespan: ``shared.feed_service``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

from services.dunning import followers
from services.dunning.api import DUNNING_PROBLEMS, router
from services.dunning.api_plans import router as plans_router
from services.dunning.api_statements import router as statements_router
from services.dunning.application import DunningApplication
from services.dunning.runs import DunningRunner
from services.dunning.settings import INBOUND_TOPICS, DunningSettings
from services.dunning.statement_runs import StatementRunner
from shared.auth import install_auth
from shared.db import migrate
from shared.feed_service import Started, feed_service_app, serve
from shared.problems import install_problem_handlers
from shared.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"
ROUTES = APIRouter()
for part in (router, plans_router, statements_router):
    ROUTES.include_router(part)


def migrate_read_models(database_url: str) -> None:
    migrate(database_url, MIGRATIONS, "dunning_alembic_version")


def _statement_runner(app: FastAPI, started: Started[DunningApplication]) -> None:
    """Statement runs: a runner of their own (their registry), through the same writer."""
    app.state.statement_runner = StatementRunner(started.application, started.engine, started.runtime.writer)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The dunning service's ASGI app; its lifespan runs migrations and starts the background loops."""
    settings = DunningSettings.taking(settings, "dunning")
    app = feed_service_app(
        "dunning", settings, application=lambda env: DunningApplication(env=env),
        read_models_url=settings.database_url, migrate=migrate_read_models, runner=DunningRunner,
        followers=followers, topics=INBOUND_TOPICS,
        run_at=settings.dunning_run_at, zone=settings.dunning_timezone, extra=_statement_runner)
    install_problem_handlers(app, DUNNING_PROBLEMS)
    install_auth(app, settings)
    return serve(app, ROUTES)
