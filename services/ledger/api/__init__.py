"""The ledger's REST routes, one module per concern; ``services.ledger.service`` mounts them.

- ``params``: what the routes take (the engine, the runtime, ``as_of``/``known_at``);
- ``accounts``: a customer's balances and open items, an invoice;
- ``intake``: ERP events posted over HTTP;
- ``reports``: aging, receivables metrics;
- ``audit``: the audit trail of a customer or an invoice;
- ``replays``: online replays of the read models (``/admin/replay``).
"""
