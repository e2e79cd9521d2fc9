"""Deposits through Kafka, on SQLite and PostgreSQL (issue 19): the ERP asks the ledger for a
prepayment of 3,000.00 for order O1; credit hears it from the ledger, and a check for O1
answers ``review`` with the deposit required until the tagged payment has come, then
approves it (limit 10,000.00, nothing else open)."""

from __future__ import annotations

from pathlib import Path

from shared.broker import EmbeddedBroker
from tests.integration.credit_harness import InProcessCredit, credit_settings_for, write_tokens
from tests.integration.dunning_harness import profile
from tests.integration.ledger_harness import InProcessLedger, Publisher, cloud_event, ledger_settings, poll

WAIT = 30.0


async def test_a_check_waits_for_the_deposit_the_ledger_asked(
        credit_broker: EmbeddedBroker, database_url: str, tmp_path: Path) -> None:
    settings = credit_settings_for(credit_broker.bootstrap, database_url, write_tokens(tmp_path))
    async with InProcessLedger(ledger_settings(credit_broker.bootstrap, database_url)), \
            InProcessCredit(settings) as credit, Publisher(credit_broker.bootstrap) as publisher:
        await publisher.send_all([
            profile("DP", event_id="p-DP", credit_limit={"currency": "EUR", "amount": "10000.00"}),
            cloud_event("prepayment.requested", {
                "request_id": "RQ1", "customer_id": "DP", "currency": "EUR", "amount": "3000.00",
                "requested_date": "2025-03-01", "due_date": "2025-03-08", "order_id": "O1"}, event_id="rq-1"),
        ])

        async def recorded() -> set[str]:
            response = await credit.get("/audit/customers/DP")  # 404 until credit has seen DP
            return {e["type"] for e in response.json()["events"]} if response.status_code == 200 else set()

        await poll(recorded, lambda types: {"LimitSet", "DepositRequested"} <= types, timeout=WAIT,
                   what="DP's limit and the request known to credit")

        async def checked() -> dict[str, str]:
            return await credit.check("DP", "O1", "8000.00", on="2025-03-02")

        first = await checked()
        assert (first["decision"], first["reasons"], first["deposit_amount"]) == (
            "review", ["deposit_required"], "3000.00")
        await publisher.send(cloud_event("payment.received", {
            "payment_id": "P1", "customer_id": "DP", "currency": "EUR", "amount": "3000.00",
            "received_date": "2025-03-03", "prepayment_request_id": "RQ1"}, event_id="pay-P1"))
        approved = await poll(checked, lambda a: a["decision"] == "approve", timeout=WAIT,
                              what="the deposit received")
        assert (approved["reasons"], approved["deposit_amount"], approved["exposure"]) == ([], None, "0.00")
