"""The service's singletons: the policy book and the registries of runs (no I/O, no clock).

- ``PolicyBook``: every stored policy by name, each revision a new version. The shipped
  default is version 1 of ``default`` until someone stores another; storing the same
  content again changes nothing (no version bump).
- ``RunRegistry``: one entry per run date. A date is run once; a run for a date before the
  latest one is refused (dunning goes forward, see ``shared.daily_registry``);
- ``StatementRunRegistry``: the same for statement runs.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.dunning.domain.errors import DunningError
from services.dunning.domain.policy import DEFAULT_POLICY_NAME, Policy, default_policy
from shared.daily_registry import DailyRegistry

POLICY_BOOK_ID = uuid5(NAMESPACE_URL, "receivables:dunning:policy-book")
RUN_REGISTRY_ID = uuid5(NAMESPACE_URL, "receivables:dunning:run-registry")
RUN_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:run")
STATEMENT_REGISTRY_ID = uuid5(NAMESPACE_URL, "receivables:dunning:statement-run-registry")
STATEMENT_RUN_NAMESPACE = uuid5(NAMESPACE_URL, "receivables:dunning:statement-run")


class RunOutOfOrder(DunningError):
    """A run dated before the latest run."""


def run_id(as_of: date) -> str:
    """Deterministic: the run of a date has the same id however often it is asked for."""
    return str(uuid5(RUN_NAMESPACE, as_of.isoformat()))


def statement_run_id(as_of: date) -> str:
    return str(uuid5(STATEMENT_RUN_NAMESPACE, as_of.isoformat()))


class PolicyBook(Aggregate):
    """The stored dunning policies, by name."""

    @staticmethod
    def create_id() -> UUID:
        return POLICY_BOOK_ID

    @event("Opened")
    def __init__(self) -> None:
        self.policies: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> Policy | None:
        """The current version of a policy; ``default`` is the shipped one until it is revised."""
        stored = self.policies.get(name)
        if stored is not None:
            return Policy.model_validate(stored)
        return default_policy() if name == DEFAULT_POLICY_NAME else None

    def all(self) -> list[Policy]:
        names = sorted({DEFAULT_POLICY_NAME, *self.policies})
        return [policy for name in names if (policy := self.get(name)) is not None]

    def store(self, policy: Policy) -> Policy:
        """Store a revision of ``policy`` (its own ``version`` is ignored: the book numbers them)."""
        current = self.get(policy.name)
        if current is not None and _content(current) == _content(policy):
            return current
        revised = policy.model_copy(update={"version": current.version + 1 if current else 1})
        self._stored(policy=revised.model_dump(mode="json", exclude={"levels": {"__all__": {"channel"}}}))
        return revised

    @event("PolicyStored")
    def _stored(self, policy: dict[str, Any]) -> None:
        self.policies[policy["name"]] = policy


def resolve(book: PolicyBook, name: str) -> Policy:
    """The policy a customer is dunned by: the one its profile names, else the default.

    An unknown name falls back to the default policy, so a typo in the ERP never silently
    stops dunning; the account view shows which policy was asked for and which is used.
    """
    policy = book.get(name) or book.get(DEFAULT_POLICY_NAME)
    assert policy is not None
    return policy


def _content(policy: Policy) -> dict[str, Any]:
    return policy.model_dump(mode="json", exclude={"version"})


class RunRegistry(DailyRegistry, created_event_name="Opened"):
    """Which dates have been run, with what outcome."""

    noun = "run"
    id_field = "run_id"
    out_of_order = RunOutOfOrder
    run_id = staticmethod(run_id)

    @staticmethod
    def create_id() -> UUID:
        return RUN_REGISTRY_ID

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """ISO date -> the run's summary."""
        return self.recorded

    def _record(self, entry: dict[str, Any]) -> None:
        self._recorded(run=entry)

    @property
    def collectors_version(self) -> int:
        """The version of the collector book (collectors and rules) the latest run assigned by
        (0: none yet)."""
        if not self.recorded:
            return 0
        return int(self.recorded[max(self.recorded)].get("collectors_version", 0))

    @event("RunRecorded")
    def _recorded(self, run: dict[str, Any]) -> None:
        self._add(run)


class StatementRunRegistry(DailyRegistry, created_event_name="Opened"):
    """Which dates statements were run for, with what outcome (a date is run once, in order)."""

    noun = "statement run"
    id_field = "statement_run_id"
    out_of_order = RunOutOfOrder
    run_id = staticmethod(statement_run_id)

    @staticmethod
    def create_id() -> UUID:
        return STATEMENT_REGISTRY_ID

    def _record(self, entry: dict[str, Any]) -> None:
        self._recorded(run=entry)

    @event("StatementRunRecorded")
    def _recorded(self, run: dict[str, Any]) -> None:
        self._add(run)
