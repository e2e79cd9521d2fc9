"""Money: Decimal amounts parsed from their text, quantized to the currency's minor unit.

The functions and bounds; the money types of the models (``InboundAmount``, ``RequestAmount``
and the rest) are in ``shared.values``.

Amounts travel as JSON strings (``"1250.00"``) and never pass through float.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

import pycountry

ZERO = Decimal("0")
_ONE = Decimal(1)

# The largest amount any one message may carry. Read models keep money as integers of
# 1/10,000 (shared.db.Money, a BIGINT): at most 922,337,203,685,477.5807, and a customer's
# balance sums many amounts. Below a trillion, a thousand of the largest amounts still fit
# in one sum; a business maximum (RECEIVABLES_MAX_AMOUNT) may be set lower, not higher.
MAX_AMOUNT = Decimal("999999999999.99")
# The most a customer's open items and unapplied cash in one currency may come to. Read models
# keep sums of them (a balance, credit exposure with its reservations, amounts at risk); this
# leaves them more than four-fifths of the BIGINT's range.
MAX_ACCOUNT_TOTAL = Decimal("100000000000000.00")
# Digits and signs of an amount's text: a longer string is no amount (and parsing it costs).
_MAX_AMOUNT_TEXT = 64

# Codes ISO 4217 lists (pycountry follows the standard's amendments); XXX ("no currency")
# and XTS ("for testing") name no money that can be owed.
ISO_CURRENCIES: frozenset[str] = frozenset(
    currency.alpha_3 for currency in pycountry.currencies
) - {"XXX", "XTS"}

# ISO 4217 minor units where they differ from the usual two digits.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
         "UYI", "VND", "VUV", "XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


MOST_MINOR_DIGITS = max(_MINOR_UNITS.values())  # (4: CLF, UYW)


def minor_digits(currency: str) -> int:
    """Digits after the decimal point for the currency's minor unit (2 unless ISO says otherwise)."""
    return _MINOR_UNITS.get(currency, 2)


@lru_cache(maxsize=256)  # one Decimal per currency, not one per amount rendered
def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency, e.g. Decimal('0.01') for EUR."""
    return Decimal(1).scaleb(-minor_digits(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit (used where a rate yields sub-cent amounts)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def parse_amount(text: object) -> Decimal:
    """Parse a money amount from its decimal text; floats and non-finite values are refused."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError("must be a decimal string such as \"1250.00\", not a JSON number")
    if len(text) > _MAX_AMOUNT_TEXT:
        raise ValueError(f"is {len(text)} characters long; an amount has at most {_MAX_AMOUNT_TEXT}")
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{text!r} is not a finite amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0 and amount.adjusted() < 28:
        amount = amount.quantize(_ONE)  # "1e3" is 1000, and is written so wherever it goes
    return amount


def check_amount_range(amount: Decimal, maximum: Decimal = MAX_AMOUNT) -> None:
    """Refuse amounts above ``maximum`` (never above ``MAX_AMOUNT``, what the stores hold)."""
    if abs(amount) > min(maximum, MAX_AMOUNT):
        raise ValueError(f"{amount} exceeds the largest amount accepted, {min(maximum, MAX_AMOUNT)}")


def check_currency(code: str) -> str:
    """Refuse a code that is not an ISO 4217 currency."""
    if code not in ISO_CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


# At most 12 digits before the point (and ``MAX_AMOUNT``): the read models keep money as a
# 64-bit count of 1/10,000 (``shared.db.Money``, below 9.2 x 10^14), and sums of amounts must
# fit too. An amount that cannot be stored would stop the projections behind its event for good.
AMOUNT_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,4})?$"
_AMOUNT = re.compile(AMOUNT_PATTERN)


def parse_amount_text(text: object) -> Decimal:
    """An amount as a request carries it: a plain decimal string (``"1250.00"``, ``"-5"``) of at
    most 12 integer and 4 fraction digits and at most ``MAX_AMOUNT``, no exponent, sign or
    spaces around it, never a JSON number."""
    if isinstance(text, str) and not _AMOUNT.match(text):
        raise ValueError(f"{text[:40]!r} is not a decimal string such as \"1250.00\"")
    amount = parse_amount(text)
    check_amount_range(amount)
    return amount


def check_minor_digits(amount: Decimal, currency: str) -> None:
    """Refuse amounts with more fractional digits than the currency has."""
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite amounts only reach here
    if -exponent > minor_digits(currency):
        raise ValueError(
            f"{amount} has more than {minor_digits(currency)} decimal digits for {currency}"
        )


def check_any_currency_digits(amount: Decimal) -> None:
    """Refuse amounts with more fractional digits than any currency has: for an amount whose
    currency is not known yet."""
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite amounts only reach here
    if -exponent > MOST_MINOR_DIGITS:
        raise ValueError(f"{amount} has more decimal digits than any currency has ({MOST_MINOR_DIGITS})")


def to_text(amount: Decimal, currency: str) -> str:
    """Render an amount as the contract's decimal string, at the currency's minor unit."""
    return str(amount.quantize(quantum(currency)))
