"""Rebuild the credit read models from its event store, in place (stop the service first);
``--verify`` compares a row-for-row checksum of every read-model table before and after."""

from __future__ import annotations

from services.credit.application import CreditApplication
from services.credit.projections import CreditProjector, metadata
from services.credit.service import migrate_read_models
from shared.db import read_models_url
from shared.eventstore import eventsourcing_env
from shared.offline_replay import replay_in_place
from shared.settings import ServiceSettings


def replay_credit(settings: ServiceSettings, *, verify: bool) -> int:
    app = CreditApplication(env=eventsourcing_env(settings.database_url, cache_size=None))  # (makes the dir)
    return replay_in_place("credit", read_models_url(settings.database_url), app, CreditProjector, metadata,
                           migrate_read_models, verify=verify)
