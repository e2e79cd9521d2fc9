"""The value types of every model, each kind defined once: money, currencies, ids, names, texts.

The same value comes in several kinds because it crosses different edges, and each edge
checks and documents it its own way. The name says which edge:

Money (``Decimal`` inside, a decimal string on the wire, never a JSON number):

- ``InboundAmount``: an amount in an ERP message (``shared.erp_events``). Parsed from its
  text only; its sign, range (the business's ``Limits``) and minor digits are checked by the
  message's model, which names the field (``erp_events._Data``, found by this type).
- ``FactAmount``: an amount in a ledger fact (``shared.ledger_feed``), signed, within
  ``MAX_AMOUNT`` (what any ledger would publish).
- ``RequestAmount``: an amount in a REST request body: the strict ``AMOUNT_PATTERN`` (at most
  12 integer and 4 fraction digits, no exponent or spaces), within ``MAX_AMOUNT``.
- ``AnswerAmount``: an amount in a REST answer; documentation only (answers render with
  ``shared.money.to_text``).
- ``PublishedAmount`` / ``PublishedSignedAmount``: an amount in a published event's ``data``
  (``shared.outbound_events``), kept as its string: the contract's pattern, documented.
- ``PolicyMoney``: an amount in a dunning policy (fees, minimum amounts): a decimal string, at
  least zero.
- ``RuleNumber``: a number in the credit rules or risk model (amounts, percentages, weights):
  a decimal string or an integer, at least zero.

Currencies:

- ``Currency``: an ISO 4217 code, checked against the list (ERP messages, ledger facts).
- ``RequestCurrency``: three capitals in a REST request (the domain checks the rest).
- ``PublishedCurrency``: a published event's currency, documented.

Ids, names and texts (none may hold a NUL: PostgreSQL refuses one in a text column, and the
read models would stop at it for good):

- ``Id``, ``Name``, ``Text``: in ERP messages and ledger facts;
- ``RequestId``, ``RequestText``: in REST requests (a text must say something);
- ``PublishedId``, ``PublishedCustomerId``: in published events, documented;
- ``RuleName``: the name of a dunning policy or a credit rule set (``POLICY_NAME_PATTERN``);
- ``Language``, ``Channel``, ``Grade``: a notice's language, a dunning channel, a risk grade.

Published events also carry ``PublishedDecimal`` (scores, ratios) and ``PublishedDate``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from shared.money import (
    AMOUNT_PATTERN,
    ZERO,
    check_amount_range,
    check_currency,
    parse_amount,
    parse_amount_text,
)

# ------------------------------------------------------------------------------- money


def _in_range(amount: Decimal) -> Decimal:
    check_amount_range(amount)  # no amount the ledger takes in, nor any it derives, goes beyond
    return amount


def _policy_money(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    return parse_amount(value)


def _rule_number(value: object) -> Decimal:
    """A decimal from its text or an integer; floats are refused (as for money)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return parse_amount(value)


InboundAmount = Annotated[Decimal, BeforeValidator(parse_amount)]

# Facts are held to the ledger's own bounds, so that a message on ar.ledger.events that no
# ledger would publish is refused rather than stop a projection behind it.
FactAmount = Annotated[Decimal, BeforeValidator(parse_amount), AfterValidator(_in_range)]

RequestAmount = Annotated[Decimal, BeforeValidator(parse_amount_text), WithJsonSchema(
    {"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1250.00"],
     "description": "decimal string, at most the currency's minor digits (and 12 before the point)"})]

AnswerAmount = Annotated[str, WithJsonSchema(
    {"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1250.00"], "description": "decimal string"})]

# The contract's decimal string of money: no exponent, no spaces (``"-12.50"`` where signed).
MONEY_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
SIGNED_MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
PublishedAmount = Annotated[str, Field(pattern=MONEY_PATTERN, examples=["1250.00"],
                                       description="A money amount: a decimal string, never a JSON number.")]
PublishedSignedAmount = Annotated[str, Field(pattern=SIGNED_MONEY_PATTERN, examples=["-250.00"],
                                             description="A signed money amount: a decimal string.")]

PolicyMoney = Annotated[Decimal, BeforeValidator(_policy_money), Field(ge=ZERO)]
RuleNumber = Annotated[Decimal, BeforeValidator(_rule_number), Field(ge=ZERO)]

# ------------------------------------------------------------------------------- currencies

# (also the pattern of a currency in a query string: ``Query(pattern=CURRENCY_PATTERN)``)
CURRENCY_PATTERN = r"^[A-Z]{3}$"
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN), AfterValidator(check_currency)]
RequestCurrency = Annotated[str, Field(pattern=CURRENCY_PATTERN, description="ISO 4217")]
PublishedCurrency = Annotated[str, Field(pattern=CURRENCY_PATTERN, examples=["EUR"],
                                         description="An ISO 4217 currency code.")]

# ------------------------------------------------------------------------------- ids, names, texts

NO_NUL = r"^[^\x00]*$"
NO_NUL_NOT_EMPTY = r"^[^\x00]+$"
Id = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
Name = Annotated[str, Field(max_length=500, pattern=NO_NUL)]
Text = Annotated[str, Field(max_length=4000, pattern=NO_NUL)]

RequestId = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL_NOT_EMPTY)]
RequestText = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]

PublishedId = Annotated[str, Field(min_length=1, description="A business id, as the ERP gave it.")]
PublishedCustomerId = Annotated[str, Field(
    min_length=1, description="The customer's id: also the message's key and the envelope's subject.")]

POLICY_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
RuleName = Annotated[str, Field(pattern=POLICY_NAME_PATTERN)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}$")]
Channel = Literal["email", "sms", "letter", "phone_task", "visit_task"]
Grade = Literal["A", "B", "C", "D", "E"]

# ------------------------------------------------------------------------------- published others

# A decimal number's text as Python writes it (scores, ratios: an exponent may appear).
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?(E[+-]?[0-9]+)?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
PublishedDecimal = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["42.5"],
                                        description="A decimal number as a string.")]
PublishedDate = Annotated[str, Field(pattern=DATE_PATTERN, json_schema_extra={"format": "date"},
                                     examples=["2024-01-31"], description="An ISO 8601 date (YYYY-MM-DD).")]
