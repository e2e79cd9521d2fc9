"""The dunning service: reminders, notices and escalation for overdue invoices, fed by the ledger."""
