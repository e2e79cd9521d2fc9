"""The ledger's notification-log followers: the read-model projector and the outbox relay.

They run in the service's process or in a child process of their own (see
``shared.worker``); either way ``start`` builds them on the runtime it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from services.ledger import outbound
from services.ledger.application import LedgerApplication
from services.ledger.read.projections import LedgerProjector
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.service_followers import start_followers
from shared.settings import ServiceSettings


def start(settings: ServiceSettings, runtime: ServiceRuntime) -> Callable[[], None]:
    """The projector and the outbox relay (``start_followers``)."""

    def relay(ledger: LedgerApplication, producer: AIOKafkaProducer) -> OutboxRelay:
        return OutboxRelay(ledger, producer, outbound.translate,
                           translate_stored=outbound.StoredTranslator(ledger))

    return start_followers(settings, runtime, name="ledger", application=LedgerApplication,
                           projector=LedgerProjector, relay=relay)
