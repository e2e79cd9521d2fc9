"""The ledger's domain model: customer accounts, their invoices, credits and disputes; and the
record of each replay of the read models."""

from services.ledger.domain.account import CustomerAccount, account_id
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.replay_run import ReplayRun

__all__ = ["CustomerAccount", "LedgerError", "ReplayRun", "account_id"]
