"""The credit service's domain: rules as data, risk scoring, the per-customer credit account.

No I/O and no clock: the review date and a check's business date are parameters, ledger
facts come in as data, and every decision is recorded with the figures behind it.
"""

from services.credit.domain.account import (
    CreditAccount,
    Hold,
    Limit,
    Reservation,
    ReviewResult,
    credit_account_id,
    credit_hold_id,
)
from services.credit.domain.errors import (
    ConflictingCheck,
    CreditError,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    UnknownHold,
)
from services.credit.domain.publication import published
from services.credit.domain.risk import (
    Factor,
    FactorWeights,
    GradeFloors,
    InvoiceHistory,
    RecencyBand,
    RiskAssessment,
    RiskModel,
    assess,
)
from services.credit.domain.rules import (
    DEFAULT_RULES_NAME,
    CreditRules,
    LimitExceededRule,
    OverdueDaysRule,
    RiskGradeRule,
    default_rules,
)

__all__ = [
    "DEFAULT_RULES_NAME",
    "ConflictingCheck",
    "CreditAccount",
    "CreditError",
    "CreditRules",
    "Factor",
    "FactorWeights",
    "GradeFloors",
    "Hold",
    "HoldNotActive",
    "InvalidAmount",
    "InvalidCommand",
    "InvoiceHistory",
    "Limit",
    "LimitExceededRule",
    "OverdueDaysRule",
    "RecencyBand",
    "Reservation",
    "ReviewResult",
    "RiskAssessment",
    "RiskGradeRule",
    "RiskModel",
    "UnknownHold",
    "assess",
    "credit_account_id",
    "credit_hold_id",
    "default_rules",
    "published",
]
