"""The ledger's payment predictions as another service asks for them: over the ledger's REST API
(``GET /predictions/customers``), never from its database.

Dunning orders its worklist by the expected loss, credit scores predicted lateness; both must
work the same as before when the ledger cannot answer (not configured, down, slow, refusing
the token): ``Outlooks.ask`` then answers None with the reason, which the caller shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import httpx

BATCH = 500  # customers per request (the ledger's limit)


@dataclass(frozen=True, slots=True)
class Outlook:
    """One customer's open invoices in one currency, as the ledger predicts them."""

    customer_id: str
    currency: str
    overdue_amount: Decimal
    expected_loss: Decimal
    predicted_days_late: int | None


@dataclass(frozen=True, slots=True)
class Answer:
    """The outlooks by (customer, currency), or None and why not."""

    outlooks: dict[tuple[str, str], Outlook] | None
    model_version: str | None = None
    unavailable: str | None = None


class Outlooks:
    """Asks the ledger at ``base_url`` (None: predictions are off) with ``token`` if any."""

    def __init__(self, base_url: str | None, token: str | None = None, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    async def ask(self, customer_ids: Iterable[str], as_of: date) -> Answer:
        if self.base_url is None:
            return Answer(None, unavailable="no ledger configured (RECEIVABLES_LEDGER_URL)")
        ids = sorted(set(customer_ids))
        found: dict[tuple[str, str], Outlook] = {}
        version = None
        try:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout,
                                         headers=self.headers) as http:
                for start in range(0, len(ids), BATCH):
                    response = await http.get("/predictions/customers", params={
                        "as_of": as_of.isoformat(), "customer_id": ids[start:start + BATCH]})
                    if response.status_code != 200:
                        return Answer(None, unavailable=f"the ledger answered {response.status_code}")
                    body = response.json()
                    version = body["model_version"]
                    for row in body["customers"]:
                        found[row["customer_id"], row["currency"]] = Outlook(
                            row["customer_id"], row["currency"], Decimal(row["overdue_amount"]),
                            Decimal(row["expected_loss"]), row["predicted_days_late"])
        except (httpx.HTTPError, ValueError, KeyError) as error:
            reason = f"the ledger could not be asked: {type(error).__name__}: {error}"
            return Answer(None, unavailable=reason[:300])
        return Answer(found, model_version=version)
