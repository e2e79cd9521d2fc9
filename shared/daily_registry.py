"""The registry of a daily run over the whole book (dunning's runs, credit's reviews): which
dates have run, each with its summary (no I/O, no clock).

A date runs once: asked again, the registry answers the recorded summary and nothing runs.
A date before the latest one is refused: the accounts ignore it anyway (time only goes
forward for them), and an operator asking for it has most likely mistyped the date.

A service's registry names its refusal, what a run is called and the id of a date's run,
and declares its own ``@event`` for a recorded run, which calls ``_add``, and its created
event's name (``created_event_name="Opened"``): the library stores events under their
class's topic (``module:Registry.Event``), so the event classes stay with the service's
registry, where its stored events name them.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate

from shared.errors import DomainError


class DailyRegistry(Aggregate):
    """The dates run so far, each with its summary."""

    # (declared for type checkers only: the library makes an aggregate class that has
    # annotations a dataclass, and a dataclass's subclasses get an __init__ of their own)
    if TYPE_CHECKING:
        noun: ClassVar[str]  # what a run is called ("run", "review")
        id_field: ClassVar[str]  # the summary's key of the run's id ("run_id", "review_id")
        out_of_order: ClassVar[type[DomainError]]  # the refusal of a date before the latest run

    def __init__(self) -> None:
        self.recorded: dict[str, dict[str, Any]] = {}  # ISO date -> the run's summary
        self.latest: str | None = None

    @staticmethod
    def run_id(as_of: date) -> str:
        """The id of the run of ``as_of`` (deterministic: the same however often it is asked for)."""
        raise NotImplementedError

    def check(self, as_of: date) -> dict[str, Any] | None:
        """The recorded run of ``as_of``, None if it is still to run; refuses earlier dates."""
        day = as_of.isoformat()
        if day in self.recorded:
            return self.recorded[day]
        if self.latest is not None and day < self.latest:
            noun = self.noun
            raise self.out_of_order(
                f"as_of {day} is before the latest {noun} ({self.latest}); {noun}s only go forward",
                field="as_of")
        return None

    def record(self, as_of: date, summary: dict[str, Any]) -> dict[str, Any]:
        """Record the run of ``as_of`` with its summary (a date recorded before keeps its first)."""
        if self.check(as_of) is None:
            self._record({self.id_field: self.run_id(as_of), "as_of": as_of.isoformat(), **summary})
        return self.recorded[as_of.isoformat()]

    def _record(self, entry: dict[str, Any]) -> None:
        """Trigger the service's ``@event`` of a recorded run (which calls ``_add``)."""
        raise NotImplementedError

    def _add(self, entry: dict[str, Any]) -> None:
        self.recorded[entry["as_of"]] = entry
        self.latest = max(self.latest or entry["as_of"], entry["as_of"])
