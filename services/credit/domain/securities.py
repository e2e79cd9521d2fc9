"""Securities (debt protection records): what secures a customer's debt, and how much of its
exposure that covers on a date.

A security counts from ``valid_from`` through ``valid_until`` (open-ended without one) until
the day it is released. Its cover on a day is what is left of its ``amount`` after the draws
made by then; for ``credit_insurance`` at most ``coverage_percent`` of the exposure (rounded
down to the currency's minor unit: insurance pays no fraction of a cent it does not owe).
``contract`` and ``power_of_attorney`` are records without cover: kept as documents. A
customer's cover in a currency is the sum over its securities in that currency, never more
than the exposure itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from services.credit.domain.errors import InvalidAmount, InvalidCommand
from shared.money import ZERO, check_minor_digits, quantum

COVERING = frozenset({"bank_guarantee", "letter_of_credit", "credit_insurance", "promissory_note",
                      "bill_of_exchange", "parent_guarantee", "collateral"})
DOCUMENTS = frozenset({"contract", "power_of_attorney"})
KINDS = tuple(sorted(COVERING | DOCUMENTS))
EXPIRY_NOTICE_DAYS = 30  # a review announces a security ending within this many days


@dataclass(slots=True)
class Security:
    security_id: str
    kind: str
    currency: str | None
    amount: Decimal | None
    coverage_percent: Decimal | None
    valid_from: date
    valid_until: date | None
    record: dict[str, Any]  # as registered: the same registration again must match it
    released_on: date | None = None
    draws: list[tuple[date, Decimal]] = field(default_factory=list)
    draw_ids: set[str] = field(default_factory=set)  # the draws named by their sender (retries count once)
    expiry_announced: bool = False

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Security:
        def decimal(name: str) -> Decimal | None:
            return Decimal(record[name]) if record.get(name) is not None else None

        return cls(security_id=record["security_id"], kind=record["kind"], currency=record.get("currency"),
                   amount=decimal("amount"), coverage_percent=decimal("coverage_percent"),
                   valid_from=date.fromisoformat(record["valid_from"]),
                   valid_until=(date.fromisoformat(record["valid_until"]) if record.get("valid_until")
                                else None),
                   record=record)

    @property
    def covers(self) -> bool:
        return self.kind in COVERING

    def counts_on(self, day: date) -> bool:
        return (self.covers and self.valid_from <= day
                and (self.valid_until is None or day <= self.valid_until)
                and (self.released_on is None or day < self.released_on))

    def drawn_by(self, day: date) -> Decimal:
        return sum((amount for drawn_on, amount in self.draws if drawn_on <= day), ZERO)

    def drawn(self) -> Decimal:
        return sum((amount for _, amount in self.draws), ZERO)

    def cover(self, exposure: Decimal, day: date) -> Decimal:
        """What it covers of ``exposure`` on ``day``."""
        if not self.counts_on(day) or self.amount is None or self.currency is None:
            return ZERO
        left = max(ZERO, self.amount - self.drawn_by(day))
        if self.kind == "credit_insurance" and self.coverage_percent is not None:
            insured = (max(exposure, ZERO) * self.coverage_percent / Decimal(100)).quantize(
                quantum(self.currency), rounding=ROUND_DOWN)
            return min(left, insured)
        return left

    def view(self, day: date) -> dict[str, Any]:
        return {**self.record, "released_on": self.released_on.isoformat() if self.released_on else None,
                "drawn": str(self.drawn()), "counts": self.counts_on(day),
                "status": self.status(day)}

    def status(self, day: date) -> str:
        if self.released_on is not None and self.released_on <= day:
            return "released"
        if not self.covers:
            return "document"
        if day < self.valid_from:
            return "pending"
        if self.valid_until is not None and day > self.valid_until:
            return "expired"
        return "active"


def cover(securities: Iterable[Security], currency: str, exposure: Decimal, day: date) -> Decimal:
    """The customer's cover of ``exposure`` in ``currency`` on ``day`` (at most the exposure)."""
    total = sum((s.cover(exposure, day) for s in securities if s.currency == currency), ZERO)
    return min(total, max(exposure, ZERO))


def security_record(*, security_id: str, kind: str, currency: str | None, amount: Decimal | None,
                    coverage_percent: Decimal | None, valid_from: date, valid_until: date | None,
                    issuer: str | None, reference: str | None, note: str | None) -> dict[str, Any]:
    """A security as it is recorded, checked: every refusal names its field."""
    if not security_id or not security_id.strip():
        raise InvalidCommand("security_id: required", field="security_id")
    if kind not in KINDS:
        raise InvalidCommand(f"kind: one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    if kind in COVERING and (currency is None or amount is None):
        missing = "currency" if currency is None else "amount"
        raise InvalidCommand(f"{missing}: a {kind} covers an amount in a currency; both are required",
                             field=missing)
    if amount is not None:
        if currency is None:
            raise InvalidCommand("currency: required with an amount", field="currency")
        try:
            check_minor_digits(amount, currency)
        except ValueError as error:
            raise InvalidAmount(f"amount: {error}", field="amount") from None
        if amount <= ZERO:
            raise InvalidAmount(f"amount: must be positive, got {amount}", field="amount")
    if kind == "credit_insurance":
        if coverage_percent is None or not ZERO < coverage_percent <= 100:
            raise InvalidCommand("coverage_percent: credit insurance covers a share of the exposure, "
                                 "more than 0 and at most 100 percent", field="coverage_percent")
    elif coverage_percent is not None:
        raise InvalidCommand(f"coverage_percent: only credit insurance has one, not a {kind}",
                             field="coverage_percent")
    if valid_until is not None and valid_until < valid_from:
        raise InvalidCommand(f"valid_until: {valid_until} is before valid_from {valid_from}",
                             field="valid_until")
    return {"security_id": security_id, "kind": kind, "currency": currency,
            "amount": str(amount) if amount is not None else None,
            "coverage_percent": str(coverage_percent) if coverage_percent is not None else None,
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat() if valid_until else None,
            "issuer": issuer, "reference": reference, "note": note}
