"""The credit projector on SQLite and PostgreSQL: an account's row is written when an event changes
one of its own columns, not for every check (a check changes the customer's positions and its
check row), whatever projector instance or batch saw the events before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.credit.application import CreditApplication
from services.credit.projections import CreditProjector, accounts, checks, positions, positions_by_currency
from services.credit.service import migrate_read_models
from shared.db import make_engine, read_models_url
from shared.eventstore import eventsourcing_env

DAY = date(2025, 3, 1)


def test_an_account_row_is_written_when_its_own_columns_change(database_url: str) -> None:
    migrate_read_models(database_url)
    app = CreditApplication(env=eventsourcing_env(database_url))
    engine = make_engine(read_models_url(database_url))
    projector = CreditProjector(app, engine)

    def catch_up() -> None:
        position = projector.position()
        while notifications := app.recorder.select_notifications(position + 1, 100):
            projector.apply(notifications)
            position = notifications[-1].id

    def account_row() -> Any:
        with engine.connect() as conn:
            return conn.execute(select(accounts).where(accounts.c.customer_id == "C1")).one()

    def reserved() -> Decimal:
        with engine.connect() as conn:
            value: Decimal = conn.execute(select(positions_by_currency.c.reserved)
                                          .where(positions_by_currency.c.customer_id == "C1")).scalar_one()
            return value

    try:
        app.set_limit("C1", "EUR", Decimal("1000.00"), "carol", None, None)
        catch_up()
        limit_set = account_row()
        assert limit_set.on_hold is False
        for order in ("O1", "O2"):
            account = app.cached_account("C1")
            assert account is not None
            account.check(order, Decimal("100.00"), "EUR", DAY, app.rules)
            app.save_tracked(account, tracking=None)
            catch_up()
        # the checks are projected, the account row is as the limit left it
        assert reserved() == Decimal("200.00")
        with engine.connect() as conn:
            assert conn.execute(select(checks.c.order_id).order_by(checks.c.order_id)).scalars().all() == [
                "O1", "O2"]
        assert account_row() == limit_set
        app.place_hold("C1", "carol", "unpaid invoices")
        catch_up()
        held = account_row()
        assert held.on_hold is True and held.updated_at > limit_set.updated_at

        # another projector (say a replica that held the followers' leadership) projects the
        # release; this one goes on from there
        app.release_hold("C1", app.cached_account("C1").active_holds()[0].hold_id,  # type: ignore[union-attr]
                         "carol", "paid")
        other = CreditProjector(app, engine)
        other.apply(app.recorder.select_notifications(projector.position() + 1, 100))
        assert account_row().on_hold is False
        app.place_hold("C1", "carol", "unpaid again")
        catch_up()
        assert account_row().on_hold is True
        with engine.connect() as conn:
            projected = conn.execute(select(positions.c.position)).scalar_one()
        assert projected == app.recorder.max_notification_id()
    finally:
        engine.dispose()
        app.close()
