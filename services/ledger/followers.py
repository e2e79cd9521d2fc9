"""The ledger's notification-log followers: the read-model projector and the outbox relay.

They run in the service's process or in a child process of their own (see
``shared.worker``); either way ``start`` builds them on the runtime it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from services.ledger import outbound
from services.ledger.application import LedgerApplication
from services.ledger.read.projections import LedgerProjector
from shared.db import make_engine
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
    ledger = LedgerApplication(env=eventsourcing_env(settings.database_url, cache_size=None))
    engine = make_engine(settings.database_url, writer=True)
    leadership = Leadership(settings.database_url, "ledger-followers")
    runtime.follow(LedgerProjector(ledger, engine), leadership=leadership)
    runtime.start_kafka()
    relay = OutboxRelay(ledger, runtime.kafka.producer, outbound.translate,
                        translate_stored=outbound.StoredTranslator(ledger))
    runtime.follow(relay, needs_kafka=True, leadership=leadership)

    def close() -> None:
        leadership.release()
        engine.dispose()
        ledger.close()

    return close
