"""The credit service's domain: rules as data, risk scoring, the per-customer credit account.

No I/O and no clock: the review date and a check's business date are parameters, ledger
facts come in as data, and every decision is recorded with the figures behind it.
"""

from services.credit.domain.errors import (
    ConflictingCheck,
    CreditError,
    HoldNotActive,
    InvalidAmount,
    InvalidCommand,
    UnknownHold,
)
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
    "CreditError",
    "CreditRules",
    "Factor",
    "FactorWeights",
    "GradeFloors",
    "HoldNotActive",
    "InvalidAmount",
    "InvalidCommand",
    "InvoiceHistory",
    "LimitExceededRule",
    "OverdueDaysRule",
    "RecencyBand",
    "RiskAssessment",
    "RiskGradeRule",
    "RiskModel",
    "UnknownHold",
    "assess",
    "default_rules",
]
