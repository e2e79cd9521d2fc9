"""Payment predictions over REST, on SQLite and PostgreSQL (issue 20): a book of customers
with habits (a third pay 20 days late, the others on the due date); before any training the
stated baseline answers; ``POST /admin/models`` trains a version; a prediction known at an
instant before it still answers from the baseline, one after it from the model; a second
replica over the same database serves the same version and the same answer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ledger_books import OPERATOR, LedgerBook, invoice, payment

OPS = {"Authorization": f"Bearer {OPERATOR}"}
START = date(2024, 1, 1)
WEEKS = 30


def habits() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(invoices, payments) of 18 customers, an invoice a week each; the last ones open."""
    issued, paid = [], []
    for c in range(18):
        late = c % 3 == 0
        customer = f"{'L' if late else 'P'}{c}"
        for week in range(WEEKS):
            issue = START + timedelta(days=7 * week)
            due = issue + timedelta(days=30)
            issued.append(invoice(customer, f"{customer}-{week}", "100.00", issue.isoformat(),
                                  due.isoformat()))
            pay_day = due + timedelta(days=20 if late else 0)
            if pay_day <= START + timedelta(days=7 * (WEEKS - 1)):
                paid.append(payment(customer, f"{customer}-P{week}", "100.00", pay_day.isoformat(),
                                    to=f"{customer}-{week}"))
    return issued, paid


async def test_trained_versions_answer_by_the_instant_they_were_stored(database_url: str,
                                                                      tmp_path: Path) -> None:
    book = LedgerBook(database_url)
    replica = LedgerBook.__new__(LedgerBook)  # (a second set of routes over the same database)
    try:
        issued, paid = habits()
        book.post(*issued, topic="ar.invoices")
        before = book.post(*paid, topic="ar.payments")
        as_of = (START + timedelta(days=7 * (WEEKS - 1) + 1)).isoformat()
        async with book.api(tmp_path) as client:
            first = (await client.get("/invoices/L0-29/prediction", params={"as_of": as_of})).json()
            assert first["model_version"] == "baseline-customer-median"
            assert (first["predicted_days_late"], first["probability_late"]) == (20, 1.0)

            assert (await client.post("/admin/models", json={})).status_code == 403  # ledger:read only
            trained = await client.post("/admin/models", json={"seed": 3}, headers=OPS)
            assert trained.status_code == 201, trained.text
            version = trained.json()
            assert version["examples"] >= 200 and version["libraries"]["scikit-learn"]
            listed = (await client.get("/admin/models", headers=OPS)).json()["models"]
            assert [m["model_version"] for m in listed] == [version["model_version"]]

            now = (await client.get("/invoices/L0-29/prediction", params={"as_of": as_of})).json()
            assert now["model_version"] == version["model_version"]
            assert 15 <= now["predicted_days_late"] <= 25 and now["probability_late"] > 0.8
            interval = now["interval"]
            assert interval["p10_days_late"] <= now["predicted_days_late"] <= interval["p90_days_late"]
            punctual = (await client.get("/invoices/P1-29/prediction", params={"as_of": as_of})).json()
            assert punctual["predicted_days_late"] <= 2
            earlier = (await client.get("/invoices/L0-29/prediction", params={
                "as_of": as_of, "known_at": before.isoformat()})).json()
            assert earlier["model_version"] == "baseline-customer-median"

            customer = (await client.get("/customers/L0/predictions", params={"as_of": as_of})).json()
            open_ids = [p["invoice_id"] for p in customer["predictions"]]
            assert "L0-29" in open_ids and "L0-0" not in open_ids  # (paid long ago: not open)
            assert (await client.get("/invoices/NOPE/prediction")).status_code == 404

        replica.__init__(database_url)  # type: ignore[misc]
        async with replica.api(tmp_path) as other:
            again = (await other.get("/invoices/L0-29/prediction", params={"as_of": as_of})).json()
        assert again == now
    finally:
        book.close()
        if hasattr(replica, "engine"):
            replica.close()
    assert datetime.now(UTC) > before


async def test_the_forecast_of_the_open_invoices_adds_up_to_at_most_the_open_total(database_url: str,
                                                                                   tmp_path: Path) -> None:
    book = LedgerBook(database_url)
    try:
        issued, paid = habits()
        book.post(*issued, topic="ar.invoices")
        book.post(*paid, topic="ar.payments")
        as_of = (START + timedelta(days=7 * (WEEKS - 1) + 1)).isoformat()
        async with book.api(tmp_path) as client:
            assert (await client.post("/admin/models", json={}, headers=OPS)).status_code == 201
            response = await client.get("/forecast/collections", params={"as_of": as_of, "weeks": 12})
            assert response.status_code == 200, response.text
            body = response.json()
            (eur,) = body["currencies"]
            balance = await client.get("/customers/L0/balance", params={"as_of": as_of})
            assert balance.status_code == 200
    finally:
        book.close()
    weeks = eur["weeks"]
    assert body["weeks"] == weeks and len(weeks) == 12
    expected = [Decimal(w["expected"]) for w in weeks]
    assert sum(expected) <= Decimal(eur["open_total"])
    assert all(Decimal(w["low"]) <= Decimal(w["expected"]) <= Decimal(w["high"]) for w in weeks)
    # the open invoices: the late payers' last four weeks and the punctual ones' last five
    assert Decimal(eur["open_total"]) > 0 and sum(expected) > Decimal(eur["open_total"]) * Decimal("0.8")


def trained_by_the_command_line(book: LedgerBook, database_url: str, monkeypatch: Any,
                                capsys: Any) -> dict[str, Any]:
    """The habits book posted, then ``receivables train ledger --seed 5``: the version it printed."""
    import json

    from services.cli import main

    issued, paid = habits()
    book.post(*issued, topic="ar.invoices")
    book.post(*paid, topic="ar.payments")
    monkeypatch.setenv("RECEIVABLES_DATABASE_URL", database_url)
    assert main(["train", "ledger", "--seed", "5"]) == 0
    trained: dict[str, Any] = json.loads(capsys.readouterr().out)
    return trained


def test_the_command_line_trains_and_backtests(database_url: str, monkeypatch: Any, capsys: Any) -> None:
    import json

    from services.cli import main
    from services.ledger.predictions.store import versions

    book = LedgerBook(database_url)
    try:
        trained = trained_by_the_command_line(book, database_url, monkeypatch, capsys)
        assert [v["model_version"] for v in versions(book.engine)] == [trained["model_version"]]
        cutoff = (START + timedelta(days=7 * 20)).isoformat()
        assert main(["backtest", "ledger", "--cutoff", cutoff, "--json"]) == 0
        (result,) = json.loads(capsys.readouterr().out)
        assert main(["backtest", "ledger", "--cutoff", cutoff]) == 0
        table = capsys.readouterr().out
    finally:
        book.close()
    assert result["cutoff"] == cutoff and result["model"]["invoices"] > 0
    assert result["late_share"] == pytest.approx(1 / 3, abs=0.05)  # a third of the customers pay late
    model_line = next(line for line in table.splitlines() if line.strip().startswith("model "))
    assert model_line.split()[1:3] == [str(result["model"]["invoices"]), f"{result['model']['mae_days']:.2f}"]


def test_a_version_trained_on_other_features_is_not_used(database_url: str, monkeypatch: Any,
                                                         capsys: Any) -> None:
    """A version stored by an earlier release (other features, or none recorded) would mislead the
    trees: it is not used, and the baseline answers until a version is trained again."""
    from datetime import UTC, datetime

    from sqlalchemy import select, update

    from services.ledger.predictions import store
    from services.ledger.predictions.model import PaymentModel

    book = LedgerBook(database_url)
    try:
        name = trained_by_the_command_line(book, database_url, monkeypatch, capsys)["model_version"]
        store._LOADED.clear()
        assert store.model_at(book.engine, datetime.now(UTC))[1] is not None
        with book.engine.begin() as conn:
            stored = store.models.c
            blob = conn.execute(select(stored.blob).where(stored.model_version == name)).scalar()
            older = PaymentModel.loads(blob)
            older.features = older.features[:-1]  # as trained before its last feature existed
            conn.execute(update(store.models).where(stored.model_version == name)
                         .values(blob=older.dumps()))
        store._LOADED.clear()
        assert store.model_at(book.engine, datetime.now(UTC)) == (name, None)
    finally:
        store._LOADED.clear()
        book.close()


async def test_what_is_recorded_after_a_prediction_is_seen_by_the_next(database_url: str,
                                                                         tmp_path: Path) -> None:
    """The customers' records are kept between requests; a payment recorded since is read again."""
    book = LedgerBook(database_url)
    try:
        book.post(invoice("K1", "K1-1", "100.00", "2024-03-01", "2024-03-31"),
                  invoice("K1", "K1-2", "50.00", "2024-03-05", "2024-04-04"), topic="ar.invoices")
        async with book.api(tmp_path) as client:
            first = (await client.get("/invoices/K1-1/prediction", params={"as_of": "2024-04-10"})).json()
            assert first["model_version"] == "baseline-customer-median" and first["probability_late"] == 1.0
            book.post(payment("K1", "KP-1", "100.00", "2024-04-08", to="K1-1"), topic="ar.payments")
            paid = (await client.get("/invoices/K1-1/prediction", params={"as_of": "2024-04-10"})).json()
            assert (paid["model_version"], paid["predicted_pay_date"], paid["predicted_days_late"]) == (
                "actual", "2024-04-08", 8)
            other = (await client.get("/invoices/K1-2/prediction", params={"as_of": "2024-04-10"})).json()
            assert other["predicted_days_late"] >= 8  # the customer's median so far: 8 days late
    finally:
        book.close()


async def test_many_customers_outlooks_by_hand(database_url: str, tmp_path: Path) -> None:
    """``GET /predictions/customers`` with the baseline (no model trained): K paid its first
    invoice 40 days late; on 10 June its B (200.00) is 41 days overdue, C (50.00) not yet due.
    B: paid 41 days late at the least, more than 30 for certain: an expected loss of all of it;
    C: the customer's median, 40 days late (not overdue: no loss yet); days late weighted by the
    open amounts: (200 x 41 + 50 x 40) / 250 = 40.8, rounded 41. J's only open invoice is 20 days
    overdue and J pays 10 days late: no loss expected."""
    book = LedgerBook(database_url)
    try:
        book.post(invoice("K", "K-A", "100.00", "2024-03-01", "2024-03-31"),
                  invoice("K", "K-B", "200.00", "2024-04-01", "2024-04-30"),
                  invoice("K", "K-C", "50.00", "2024-06-01", "2024-06-30"),
                  invoice("J", "J-A", "80.00", "2024-03-01", "2024-03-31"),
                  invoice("J", "J-B", "70.00", "2024-04-21", "2024-05-21"), topic="ar.invoices")
        book.post(payment("K", "KP", "100.00", "2024-05-10", to="K-A"),
                  payment("J", "JP", "80.00", "2024-04-10", to="J-A"), topic="ar.payments")
        async with book.api(tmp_path) as client:
            response = await client.get("/predictions/customers", params={
                "as_of": "2024-06-10", "customer_id": ["K", "J", "NOBODY"]})
            assert response.status_code == 200, response.text
            body = response.json()
            missing = await client.get("/predictions/customers", params={"as_of": "2024-06-10"})
    finally:
        book.close()
    assert body["model_version"] == "baseline-customer-median"
    assert body["customers"] == [
        {"customer_id": "J", "currency": "EUR", "open_amount": "70.00", "overdue_amount": "70.00",
         "expected_loss": "0.00", "predicted_days_late": 20, "invoices": 1},
        {"customer_id": "K", "currency": "EUR", "open_amount": "250.00", "overdue_amount": "200.00",
         "expected_loss": "200.00", "predicted_days_late": 41, "invoices": 2},
    ]
    assert missing.status_code == 422 and "customer_id" in missing.text
