"""The ledger's REST routes, one module per concern; ``services.ledger.service`` mounts them.

- ``params``: what the routes take (the engine, the runtime, ``as_of``/``known_at``);
- ``accounts``: a customer's balances and open items, an invoice;
- ``intake``: ERP events posted over HTTP;
- ``reports``: aging, receivables metrics, statements of account;
- ``advance_receipts``: prepayment requests, the unapplied cash's aging;
- ``audit``: the audit trail of a customer or an invoice;
- ``replays``: online replays of the read models (``/admin/replay``).

``LEDGER_PROBLEMS`` is the one mapping of the ledger domain's refusals to problems.
"""

from services.ledger.domain.errors import LedgerError
from shared.problems import DomainProblems

LEDGER_PROBLEMS = DomainProblems(kinds={LedgerError: (409, "ledger-refused")})
