"""Fees and statutory late-payment interest shown on a notice (never booked in the ledger).

Interest is simple: open amount * annual rate / 365 * days past due, per invoice, rounded
half-up to the currency's minor unit; nothing accrues before the due date.
"""

from __future__ import annotations

from decimal import Decimal

from shared.money import ZERO, quantize

DAYS_PER_YEAR = Decimal(365)


def late_interest(open_amount: Decimal, days_past_due: int, annual_percent: Decimal | None,
                  currency: str) -> Decimal:
    """Simple interest on ``open_amount`` for ``days_past_due`` days at ``annual_percent`` a year."""
    if annual_percent is None or days_past_due <= 0 or open_amount <= ZERO:
        return quantize(ZERO, currency)
    rate = annual_percent / Decimal(100)
    return quantize(open_amount * rate * days_past_due / DAYS_PER_YEAR, currency)


def level_fee(fee: Decimal, currency: str) -> Decimal:
    """A level's fee in the notice's currency, at its minor unit."""
    return quantize(fee, currency)
