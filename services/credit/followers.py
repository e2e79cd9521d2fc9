"""The credit service's notification-log followers: the read-model projector and the outbox relay.

They run in the service's process or in a child process of their own (see
``shared.worker``); either way ``start`` builds them on the runtime it is given.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from services.credit import outbound
from services.credit.application import CreditApplication
from services.credit.projections import CreditProjector
from shared.db import read_models_url
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.service_followers import start_followers
from shared.settings import ServiceSettings


def start(settings: ServiceSettings, runtime: ServiceRuntime) -> Callable[[], None]:
    """The projector (into ``read_models_url``) and the outbox relay (``start_followers``)."""

    def relay(credit: CreditApplication, producer: AIOKafkaProducer) -> OutboxRelay:
        return OutboxRelay(credit, producer, outbound.translate,
                           translate_stored=outbound.stored_translator(credit))

    return start_followers(settings, runtime, name="credit", application=CreditApplication,
                           projector=CreditProjector, relay=relay,
                           read_models_url=read_models_url(settings.database_url))
