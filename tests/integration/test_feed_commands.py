"""Commands of the services that follow the ledger's feed (``FeedApplication.command`` and
``change_accounts``) on a real event store: an account another replica wrote since it was
cached is acted on again on a fresh copy; a refused command or a failed chunk leaves nothing
of itself in the cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from services.credit.application import CreditApplication
from services.credit.domain import InvalidAmount
from services.dunning.application import DunningApplication
from shared.eventstore import eventsourcing_env


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[CreditApplication, CreditApplication]]:
    app = CreditApplication(env=eventsourcing_env(database_url))
    other = CreditApplication(env=eventsourcing_env(database_url))  # another replica's
    try:
        yield app, other
    finally:
        app.close()
        other.close()


def test_a_command_on_an_account_another_replica_wrote_is_done_again_on_a_fresh_copy(
    replicas: tuple[CreditApplication, CreditApplication],
) -> None:
    app, other = replicas
    app.set_limit("C1", "EUR", Decimal("1000.00"), "carol", None, None)
    other.set_limit("C1", "USD", Decimal("500.00"), "dave", None, None)  # app's cached copy is stale
    app.place_hold("C1", "alice", "call first")
    fresh = other.account("C1", fresh=True)
    assert fresh is not None
    assert (sorted(fresh.limits), len(fresh.active_holds()), fresh.version) == (["EUR", "USD"], 1, 4)
    assert app.release_hold("NOBODY", "x", "bob", "no account") is None


def test_a_refused_command_leaves_nothing_in_the_cache(
    replicas: tuple[CreditApplication, CreditApplication],
) -> None:
    app, _ = replicas
    app.set_limit("C1", "EUR", Decimal("1000.00"), "carol", None, None)
    with pytest.raises(InvalidAmount):
        app.set_limit("C1", "EUR", Decimal("-1"), "carol", None, None)
    assert not app.is_cached(app.account_id("C1"))
    account = app.account("C1")
    assert account is not None and account.limit_amount("EUR") == Decimal("1000.00")


def test_a_chunk_on_accounts_another_replica_wrote_is_done_again_on_fresh_copies(
    replicas: tuple[CreditApplication, CreditApplication],
) -> None:
    app, other = replicas
    for customer in ("C1", "C2"):
        app.set_limit(customer, "EUR", Decimal("1000.00"), "carol", date(2025, 1, 31), None)
    other.set_limit("C2", "USD", Decimal("500.00"), "dave", date(2025, 1, 31), None)
    chunk = app.review_chunk(["C1", "C2", "NOBODY"], date(2025, 2, 1))
    assert (chunk.customers, chunk.limits_expired) == (2, 3)
    c2 = other.account("C2", fresh=True)
    assert c2 is not None and c2.limits == {}


def test_a_failed_chunk_evicts_its_accounts(database_url: str) -> None:
    app = DunningApplication(env=eventsourcing_env(database_url))
    try:
        assert app.promise("C1", made_on=date(2025, 1, 1), promised_date=date(2025, 1, 2),
                           amount=Decimal(1), currency=None, invoice_ids=None) is None  # no account
        account = app.new_account("C1")
        app.save_tracked(account, tracking=None)
        assert app.is_cached(account.id)

        def failing(ids: list[str]) -> tuple[None, list[object]]:
            raise RuntimeError("the run failed")

        with pytest.raises(RuntimeError):
            app.change_accounts(["C1"], failing)
        assert not app.is_cached(account.id)
    finally:
        app.close()
