"""Domain errors: a command that breaks a rule raises one, naming the ids involved."""

from shared.errors import DomainError


class LedgerError(DomainError):
    """A message the ledger refuses; the consumer dead-letters it with this text as reason."""


class CurrencyMismatch(LedgerError):
    pass


class UnknownInvoice(LedgerError):
    pass


class UnknownPayment(LedgerError):
    pass


class UnknownDispute(LedgerError):
    pass


class ConflictingDuplicate(LedgerError):
    """The same business id arrived again with different content."""


class AmountExceedsOpen(LedgerError):
    pass


class InvoiceClosed(LedgerError):
    pass


class BeyondCapacity(LedgerError):
    """What would take a customer's balance in a currency beyond what the books can hold."""


class RefundExceedsUnapplied(LedgerError):
    """A refund of more than the customer's unapplied cash (or the named payment's)."""


class UnknownPrepayment(LedgerError):
    """No such prepayment request."""
