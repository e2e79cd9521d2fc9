"""Online replay of the ledger's read models (``online``), the rows it holds in memory while
it builds (``shadow_rows``), and the record of each run in the event store (``runs``)."""
