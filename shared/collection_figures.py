"""The collection figures of a period, from its receivable balances: DSO, best possible DSO,
average days delinquent and CEI. The one definition the ledger's receivables metrics and
dunning's collector KPIs both use.

For a period of ``days`` days: AR at its start (the balance at the end of the day before),
credit sales in it, AR at its end and the part of that not yet due (current AR):

- DSO = AR at end / credit sales * days; best possible DSO = current AR / credit sales * days;
- ADD (average days delinquent) = DSO - best possible DSO;
- CEI = (AR at start + credit sales - AR at end) / (AR at start + credit sales - current AR
  at end) * 100.

Days and percentages are rounded half-up to two decimals, and ADD is the difference of the
two rounded DSOs, so the published figures satisfy the formula exactly. A ratio whose
divisor is zero (or, for DSO, credit sales of zero or less) is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class CollectionFigures:
    dso: Decimal | None
    best_possible_dso: Decimal | None
    average_days_delinquent: Decimal | None
    cei: Decimal | None


def collection_figures(*, ar_start: Decimal, sales: Decimal, ar_end: Decimal, current_end: Decimal,
                       days: int) -> CollectionFigures:
    dso = rounded(ar_end / sales * days) if sales > 0 else None
    best = rounded(current_end / sales * days) if sales > 0 else None
    collectible = ar_start + sales - current_end
    cei = rounded((ar_start + sales - ar_end) / collectible * 100) if collectible else None
    return CollectionFigures(dso, best, dso - best if dso is not None and best is not None else None, cei)


def rounded(value: Decimal) -> Decimal:
    """Half-up to two decimals (days, percentages)."""
    return value.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)
