"""Collectors and the rules that assign customers to them (no I/O, no clock).

- ``Collector``: a person of the credit team who works a portfolio of customers.
- ``AssignmentRule``: ``collector_id`` and the conditions (``when``) a customer must meet;
  every condition given must hold. The first rule that matches assigns the customer.
- ``CollectorBook``: the service's one list of collectors and its ordered rules, each change
  an event (the rules' ``version`` counts their revisions).
- ``Portfolio``: what the rules look at of one customer (its profile's segment and country,
  its risk grade, its open amount per currency, its invoices' attributes).

A customer's assignment itself is kept by its ``DunningAccount``: by rule (which rule of
which version) or by hand (who), a manual one winning until it is removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.dunning.domain.errors import DunningError
from shared.values import Grade, Id, Name, RequestAmount

COLLECTOR_BOOK_ID = uuid5(NAMESPACE_URL, "receivables:dunning:collector-book")
MAX_RULES = 500
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class UnknownCollector(DunningError):
    """A rule or an assignment names a collector the book does not know."""


class Collector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collector_id: Id
    name: Name
    email: Email | None = None
    active: bool = True


class AttributeCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Id
    value: Name


class Conditions(BaseModel):
    """What a customer must meet; a condition left out always holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: Name | None = None
    country: Name | None = None
    risk_grade: Annotated[list[Grade], Field(min_length=1)] | None = None
    min_open_amount: RequestAmount | None = None  # in any one currency
    attribute: AttributeCondition | None = None

    def holds(self, customer: Portfolio) -> bool:
        if self.segment is not None and customer.segment != self.segment:
            return False
        if self.country is not None and customer.country != self.country:
            return False
        if self.risk_grade is not None and customer.risk_grade not in self.risk_grade:
            return False
        if self.min_open_amount is not None and not any(
                amount >= self.min_open_amount for amount in customer.open_amounts.values()):
            return False
        return self.attribute is None or (self.attribute.name, self.attribute.value) in customer.attributes


class AssignmentRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collector_id: Id
    when: Conditions = Conditions()


@dataclass(frozen=True, slots=True)
class Portfolio:
    """What the assignment rules see of one customer."""

    segment: str | None
    country: str | None
    risk_grade: str | None
    open_amounts: Mapping[str, Decimal]  # per currency: ``min_open_amount`` is met in any one
    attributes: frozenset[tuple[str, str]]  # (name, value) of any of its invoices' attributes


@dataclass(frozen=True, slots=True)
class RuleMatch:
    collector_id: str
    rule: int  # its index in the list (0: the first)
    version: int  # of the rules


def first_match(rules: Sequence[AssignmentRule], version: int, customer: Portfolio) -> RuleMatch | None:
    """The first rule whose conditions the customer meets, or None."""
    for index, rule in enumerate(rules):
        if rule.when.holds(customer):
            return RuleMatch(rule.collector_id, index, version)
    return None


class CollectorBook(Aggregate):
    """The collectors and the ordered assignment rules (one per service)."""

    @staticmethod
    def create_id() -> UUID:
        return COLLECTOR_BOOK_ID

    @event("Opened")
    def __init__(self) -> None:
        self.collectors: dict[str, dict[str, Any]] = {}
        self.rule_data: list[dict[str, Any]] = []
        self.rules_version = 0

    def collector(self, collector_id: str) -> Collector | None:
        stored = self.collectors.get(collector_id)
        return Collector.model_validate(stored) if stored is not None else None

    def all_collectors(self) -> list[Collector]:
        return [Collector.model_validate(self.collectors[c]) for c in sorted(self.collectors)]

    @property
    def rules(self) -> list[AssignmentRule]:
        return [AssignmentRule.model_validate(rule) for rule in self.rule_data]

    @property
    def active_rules(self) -> list[AssignmentRule]:
        """The rules as they assign: those of a collector no longer active are passed over."""
        return [rule for rule in self.rules if self.collectors[rule.collector_id]["active"]]

    def put_collector(self, collector: Collector) -> bool:
        """Store a collector (new or changed); False when it is stored already as it is."""
        data = collector.model_dump(mode="json")
        if self.collectors.get(collector.collector_id) == data:
            return False
        self._collector_stored(collector=data)
        return True

    def put_rules(self, rules: Sequence[AssignmentRule]) -> bool:
        """Replace the rules (a new version); False when they are the same as stored."""
        for index, rule in enumerate(rules):
            if rule.collector_id not in self.collectors:
                raise UnknownCollector(f"rule {index} (from 0) names no collector {rule.collector_id!r}",
                                       field="rules")
        data = [rule.model_dump(mode="json", exclude_none=True) for rule in rules]
        if data == self.rule_data:
            return False
        self._rules_stored(rules=data, version=self.rules_version + 1)
        return True

    def require(self, collector_id: str) -> Collector:
        """A collector who may be given customers (known and active)."""
        collector = self.collector(collector_id)
        if collector is None:
            raise UnknownCollector(f"no collector {collector_id!r}", field="collector_id")
        if not collector.active:
            raise UnknownCollector(f"collector {collector_id!r} is not active", field="collector_id")
        return collector

    @event("CollectorStored")
    def _collector_stored(self, collector: dict[str, Any]) -> None:
        self.collectors[collector["collector_id"]] = collector

    @event("RulesStored")
    def _rules_stored(self, rules: list[dict[str, Any]], version: int) -> None:
        self.rule_data = rules
        self.rules_version = version

