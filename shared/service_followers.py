"""A service's two notification-log followers, wired one way for every service: the
read-model projector and the outbox relay, on an application of their own over the
service's event store.

Each service's ``followers`` module says only what is its own (its application, projector
and relay) in a ``start(settings, runtime)`` that calls ``start_followers``; the module is
what ``shared.worker`` imports in the followers' child process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine

from shared.db import make_engine
from shared.eventstore import TrackedApplication, eventsourcing_env
from shared.follower import Follower
from shared.leadership import Leadership
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

App = TypeVar("App", bound=TrackedApplication)


def start_followers(
    settings: ServiceSettings, runtime: ServiceRuntime, *, name: str,
    application: Callable[..., App],
    projector: Callable[[App, Engine], Follower],
    relay: Callable[[App, AIOKafkaProducer], OutboxRelay],
    read_models_url: str | None = None,
) -> Callable[[], None]:
    """Register the projector and the outbox relay; returns what closes their resources.

    With several replicas, only the one holding the followers' leadership runs them (the
    outbox would otherwise publish every event once per replica). ``read_models_url``: where
    the projector writes, if not in the event store's database.
    """
    app = application(env=eventsourcing_env(settings.database_url, cache_size=None))
    engine = make_engine(read_models_url or settings.database_url, writer=True)
    leadership = Leadership(settings.database_url, f"{name}-followers")
    runtime.follow(projector(app, engine), leadership=leadership)
    runtime.start_kafka()
    runtime.follow(relay(app, runtime.kafka.producer), needs_kafka=True, leadership=leadership)

    def close() -> None:
        leadership.release()
        engine.dispose()
        app.close()

    return close

