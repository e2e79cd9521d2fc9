"""What the dunning and credit projectors share: one transaction per batch of notifications
under the projector's position row (the batch worked out before it), and a mirror of
recently seen account aggregates.

The mirror lets a projector move an account forward with each event (loading it from the
store only when it has not seen its previous version), so it knows the whole state an event
leaves behind without a query per event.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification
from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from shared.db import upsert
from shared.eventstore import TrackedApplication

A = TypeVar("A")


def positions_table(name: str, metadata: MetaData) -> Table:
    """The table of how far a service's projector has read the notification log."""
    return Table(
        name, metadata,
        Column("name", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False),
    )


def optional_date(text: str | None) -> date | None:
    """An event's ISO date, or None."""
    return date.fromisoformat(text) if text else None


class Touched(Generic[A]):
    """An account a batch touched, as its last event there left it; a projector's own kind
    of entry adds what else the batch must write for it."""

    __slots__ = ("account", "timestamp")

    def __init__(self, account: A) -> None:
        self.account = account
        self.timestamp: Any = None  # the instant of the batch's last event of the account


E = TypeVar("E", bound=Touched[Any])


class AccountProjector(Generic[A]):
    """A projector's batch step; a service's projector says what a batch writes (``project``)."""

    name: str
    positions: Table  # (name, position): how far each projector has read the notification log

    def __init__(self, app: TrackedApplication, engine: Engine, mirror_size: int = 20_000) -> None:
        self.app = app
        self.engine = engine
        self.mirror_size = mirror_size
        self._mirror: OrderedDict[UUID, A] = OrderedDict()
        self._done: int | None = None  # the position this projector last wrote or read

    def position(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(self.positions.c.position).where(self.positions.c.name == self.name)
            ).scalar()
        return int(value or 0)

    async def process(self, notifications: Sequence[Notification]) -> None:
        # One transaction for the batch: it is worked out before the transaction begins
        # (``prepare``), so on SQLite the write lock the service's own saves queue for
        # (shared.write_turn.WriteTurn) is held only while its rows are written; a commit per
        # few hundred events cost a sixth of the projector.
        await asyncio.to_thread(self.apply, notifications)

    def apply(self, notifications: Sequence[Notification]) -> None:
        events: list[tuple[int, Any]] = [(n.id, self.app.mapper.to_domain_event(n)) for n in notifications]
        # The batch is prepared before its transaction, from the position this projector last
        # wrote: on SQLite the transaction holds the database's write lock, which the
        # service's own saves (credit checks, every few milliseconds) would otherwise wait
        # for while the batch is worked out. In the transaction the position is read again
        # (locked, on PostgreSQL); if another replica's projector moved it, the batch is
        # prepared again from there (the mirror only holds accounts at stored versions).
        done = self._done if self._done is not None else self.position()
        self._done = None  # unknown until the transaction commits
        try:
            write, last = self._prepared(events, done)
            with self.engine.begin() as conn:
                query = select(self.positions.c.position).where(self.positions.c.name == self.name)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()  # one projector writes at a time
                locked = int(conn.execute(query).scalar() or 0)
                if locked != done:
                    self.forget()
                    write, last = self._prepared(events, locked)
                if write is None:
                    self._done = locked
                    return
                write(conn)
                upsert(conn, self.positions, [{"name": self.name, "position": last}], ["name"])
        except BaseException:
            self.forget()
            raise
        self._done = last

    def forget(self) -> None:
        """Drop what a projector keeps of the read models' state as of its position (a batch
        that was prepared was not written, or another replica wrote past it): it reads it
        again in its next transaction. (The mirror holds accounts at stored versions: kept.)"""

    def _prepared(self, events: list[tuple[int, Any]],
                  done: int) -> tuple[Callable[[Connection], None] | None, int]:
        """What writes the events after ``done`` (None if there are none), and the last one's position."""
        events = [(position, e) for position, e in events if position > done]
        if not events:
            return None, done
        return self.prepare(events, done), events[-1][0]

    def prepare(self, events: list[tuple[int, Any]], done: int) -> Callable[[Connection], None]:
        """What writes these events' changes (after position ``done``) in a transaction.

        By default everything is done in the transaction (``project``); a projector whose
        batches take long to work out builds its rows here and returns only their writing.
        """
        return lambda conn: self.project(conn, events, done)

    def project(self, conn: Connection, events: list[tuple[int, Any]], done: int) -> None:
        """Write what these events (after position ``done``) change, in ``conn``'s transaction."""
        raise NotImplementedError

    def previous(self, event: Any) -> A | None:
        """The account as it was before ``event``: from the mirror when it holds that version,
        else from the store (None before the account's first event)."""
        account = self._mirror.get(event.originator_id)
        if account is not None and account.version == event.originator_version - 1:  # type: ignore[attr-defined]
            return account
        if event.originator_version == 1:
            return None
        found: A = self.app.repository.get(event.originator_id, version=event.originator_version - 1)
        return found

    def advance(self, event: Any, previous: A | None) -> A:
        """The account as ``event`` leaves it (``previous``: as ``previous(event)`` gave it), remembered."""
        account: A = event.mutate(previous)
        assert account is not None
        self.remember(event.originator_id, account)
        return account

    @staticmethod
    def touch(touched: dict[UUID, E], event: Any, account: A, new: Callable[[A], E]) -> E:
        """The batch's entry of the event's account (``new`` makes one), brought to ``account``."""
        entry = touched.get(event.originator_id)
        if entry is None:
            entry = touched[event.originator_id] = new(account)
        entry.account = account
        entry.timestamp = event.timestamp
        return entry

    def remember(self, aggregate_id: UUID, account: A) -> None:
        """Keep an account in the mirror as the latest seen (the least recently seen go)."""
        mirror = self._mirror
        mirror[aggregate_id] = account
        mirror.move_to_end(aggregate_id)
        while len(mirror) > self.mirror_size:
            mirror.popitem(last=False)
