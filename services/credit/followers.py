"""The credit service's notification-log followers: the read-model projector and the outbox relay.

They run in the service's process or in a child process of their own (see
``shared.worker``); either way ``start`` builds them on the runtime it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from services.credit import outbound
from services.credit.application import CreditApplication
from services.credit.projections import CreditProjector
from shared.db import make_engine, read_models_url
from shared.eventstore import eventsourcing_env
from shared.leadership import Leadership
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


def start(settings: ServiceSettings, runtime: ServiceRuntime) -> Callable[[], None]:
    """Register the projector and the outbox relay; returns what closes their resources.

    With several replicas, only the one holding the followers' leadership runs them (the
    outbox would otherwise publish every event once per replica).
    """
    credit = CreditApplication(env=eventsourcing_env(settings.database_url, cache_size=None))
    engine = make_engine(read_models_url(settings.database_url), writer=True)
    leadership = Leadership(settings.database_url, "credit-followers")
    runtime.follow(CreditProjector(credit, engine), leadership=leadership)
    runtime.start_kafka()
    runtime.follow(OutboxRelay(credit, runtime.kafka.producer, outbound.translate,
                               translate_stored=outbound.stored_translator(credit)),
                   needs_kafka=True, leadership=leadership)

    def close() -> None:
        leadership.release()
        engine.dispose()
        credit.close()

    return close
