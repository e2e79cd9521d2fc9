"""Domain errors of the credit service: a refused command raises one, naming the ids involved."""

from shared.errors import DomainError


class CreditError(DomainError):
    """A command the credit domain refuses, naming its ``field`` where it is about one; the
    service answers it with a problem (``api.CREDIT_PROBLEMS``)."""


class InvalidAmount(CreditError):
    """A money amount that is negative, not positive where it must be, or too precise for its currency."""


class InvalidCommand(CreditError):
    """A command missing what the audit trail needs (who, why) or with inconsistent dates."""


class ConflictingCheck(CreditError):
    """The same ``order_id`` checked again with a different amount or currency."""


class UnknownHold(CreditError):
    pass


class HoldNotActive(CreditError):
    """The hold was already released."""


class UnknownSecurity(CreditError):
    pass


class ConflictingSecurity(CreditError):
    """A security id registered again with different content, or a change it cannot take
    (released already, a draw beyond what is left, a draw on a record without cover)."""


class UnknownWarning(CreditError):
    pass
