"""The ledger's read side: the read models and their projector (``projections``), their
schema's migrations (``schema``), and the queries the REST routes answer from them
(``queries``, ``aging``, ``receivables_metrics``) or from the event store (``audit``)."""
