"""The ledger's domain model: customer accounts, their invoices, credits and disputes."""

from services.ledger.domain.account import CustomerAccount, account_id
from services.ledger.domain.errors import LedgerError

__all__ = ["CustomerAccount", "LedgerError", "account_id"]
