"""Rebuild the dunning read models from its event store, in place (stop the service first);
``--verify`` compares a row-for-row checksum of every read-model table before and after."""

from __future__ import annotations

from services.dunning.application import DunningApplication
from services.dunning.projections import DunningProjector, metadata
from services.dunning.service import migrate_read_models
from shared.eventstore import eventsourcing_env
from shared.offline_replay import replay_in_place
from shared.settings import ServiceSettings


def replay_dunning(settings: ServiceSettings, *, verify: bool) -> int:
    app = DunningApplication(env=eventsourcing_env(settings.database_url, cache_size=None))  # (makes the dir)
    return replay_in_place("dunning", settings.database_url, app, DunningProjector, metadata,
                           migrate_read_models, verify=verify)
