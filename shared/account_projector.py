"""What the dunning and credit projectors share: one transaction per batch of notifications
under the projector's position row, and a mirror of recently seen account aggregates.

The mirror lets a projector move an account forward with each event (loading it from the
store only when it has not seen its previous version), so it knows the whole state an event
leaves behind without a query per event.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification
from sqlalchemy import Engine, Table, select
from sqlalchemy.engine import Connection

from shared.db import upsert
from shared.eventstore import TrackedApplication

A = TypeVar("A")


class AccountProjector(Generic[A]):
    """A projector's batch step; a service's projector says what a batch writes (``project``)."""

    name: str
    positions: Table  # (name, position): how far each projector has read the notification log

    def __init__(self, app: TrackedApplication, engine: Engine, mirror_size: int = 20_000) -> None:
        self.app = app
        self.engine = engine
        self.mirror_size = mirror_size
        self._mirror: OrderedDict[UUID, A] = OrderedDict()

    def position(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(self.positions.c.position).where(self.positions.c.name == self.name)
            ).scalar()
        return int(value or 0)

    async def process(self, notifications: Sequence[Notification]) -> None:
        await asyncio.to_thread(self.apply, notifications)

    def apply(self, notifications: Sequence[Notification]) -> None:
        events: list[tuple[int, Any]] = [(n.id, self.app.mapper.to_domain_event(n)) for n in notifications]
        with self.engine.begin() as conn:
            query = select(self.positions.c.position).where(self.positions.c.name == self.name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # one projector writes at a time
            done = int(conn.execute(query).scalar() or 0)
            events = [(position, e) for position, e in events if position > done]
            if not events:
                return
            self.project(conn, events, done)
            upsert(conn, self.positions, [{"name": self.name, "position": events[-1][0]}], ["name"])

    def project(self, conn: Connection, events: list[tuple[int, Any]], done: int) -> None:
        """Write what these events (after position ``done``) change, in ``conn``'s transaction."""
        raise NotImplementedError

    def remember(self, aggregate_id: UUID, account: A) -> None:
        """Keep an account in the mirror as the latest seen (the least recently seen go)."""
        mirror = self._mirror
        mirror[aggregate_id] = account
        mirror.move_to_end(aggregate_id)
        while len(mirror) > self.mirror_size:
            mirror.popitem(last=False)
