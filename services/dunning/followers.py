"""The dunning service's notification-log followers: the read-model projector and the outbox relay.

They run in the service's process or in a child process of their own (see
``shared.worker``); either way ``start`` builds them on the runtime it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from services.dunning import outbound
from services.dunning.application import DunningApplication
from services.dunning.projections import DunningProjector
from shared.db import make_engine
from shared.eventstore import eventsourcing_env
from shared.leadership import Leadership
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


def start(settings: ServiceSettings, runtime: ServiceRuntime) -> Callable[[], None]:
    """Register the projector and the outbox relay; returns what closes their resources.

    With several replicas, only the one holding the followers' leadership runs them.
    """
    dunning = DunningApplication(env=eventsourcing_env(settings.database_url, cache_size=None))
    engine = make_engine(settings.database_url, writer=True)
    leadership = Leadership(settings.database_url, "dunning-followers")
    runtime.follow(DunningProjector(dunning, engine), leadership=leadership)
    runtime.start_kafka()
    runtime.follow(OutboxRelay(dunning, runtime.kafka.producer, outbound.make_translate(dunning)),
                   needs_kafka=True, leadership=leadership)

    def close() -> None:
        leadership.release()
        engine.dispose()
        dunning.close()

    return close
