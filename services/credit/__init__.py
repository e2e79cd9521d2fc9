"""The credit service: limits, exposure, risk grades, holds and credit checks, fed by the ledger."""
