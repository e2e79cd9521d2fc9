"""A customer's ledger account in memory, feeding another account the way the services feed it.

ERP messages go through the ledger's ``CustomerAccount``; every ledger event it stores is
turned into its ``ar.ledger.events`` messages by ``services.ledger.outbound.translate``, and
each message, decoded as a consumer decodes it (``shared.ledger_feed.decode``), is kept in
``ledger_events`` and handed to ``observe``. A test's ``Customer`` subclasses
``LedgerFedCustomer``: ``observe`` gives a fact to its account(s), ``collect`` takes what they
recorded (``send`` and the ERP shortcuts return what ``collect`` returns), and
``ledger_message`` sees each ledger message before it is decoded.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import orjson

from services.ledger.domain import CustomerAccount
from services.ledger.outbound import translate
from shared.erp_events import parse_envelope, validate_event
from shared.ledger_feed import Fact, decode
from shared.outbox import Outbound

_ids = itertools.count(1)


def envelope(event_type: str, data: dict[str, Any], *, event_id: str | None = None,
             source: str = "erp/eu-1") -> dict[str, Any]:
    """A message about ``data["customer_id"]`` as the ERP or the ledger sends one (a fresh
    ``erp-N`` id unless one is named)."""
    return {"specversion": "1.0", "id": event_id or f"erp-{next(_ids)}", "source": source,
            "type": event_type, "subject": data.get("customer_id"), "data": data}


def sent(event_type: str, data: dict[str, Any], event_id: str = "e1", source: str = "erp/x") -> bytes:
    """A message's value as a consumer reads it (for ``shared.ledger_feed.decode``)."""
    return orjson.dumps(envelope(event_type, data, event_id=event_id, source=source))


class LedgerFedCustomer:
    """One customer's ledger account; its facts go to ``observe``. The account a subclass feeds
    must exist before ``__init__`` runs here: it sends the customer's profile."""

    # the profile's fields unless the test names them
    profile_defaults: ClassVar[dict[str, Any]] = {"name": "Acme Ltd"}

    def __init__(self, customer_id: str, **profile: Any) -> None:
        self.customer_id = customer_id
        self.ledger = CustomerAccount(customer_id)
        self.ledger_events: list[Fact] = []
        self.profile(**profile)

    # what a test's customer does with the ledger's messages --------------------------------

    def observe(self, fact: Fact) -> None:
        raise NotImplementedError

    def collect(self) -> Any:
        """After each ERP message: what the fed account(s) recorded, for the test to keep."""
        return None

    def ledger_message(self, message: Outbound) -> None:
        """Each message the ledger publishes, before it is decoded."""

    # ERP side ------------------------------------------------------------------------------

    def send(self, kind: str, **data: Any) -> Any:
        message = envelope(kind, {"customer_id": self.customer_id, **data})
        self.ledger.handle(validate_event(parse_envelope(message)))
        for stored in self.ledger.collect_events():
            for message in translate(stored):
                self.ledger_message(message)
                fact = decode(message.value, topic=message.topic, key=message.key.encode())
                self.ledger_events.append(fact)
                self.observe(fact)
        return self.collect()

    def profile(self, **profile: Any) -> Any:
        return self.send("customer.upserted", **{**self.profile_defaults, **profile})

    def invoice(self, invoice_id: str, amount: str, issue: str, due: str, currency: str = "EUR",
                **kw: Any) -> Any:
        return self.send("invoice.issued", invoice_id=invoice_id, amount=amount, issue_date=issue,
                         due_date=due, currency=currency, **kw)

    def pay(self, payment_id: str, amount: str, received: str, currency: str = "EUR", **kw: Any) -> Any:
        return self.send("payment.received", payment_id=payment_id, amount=amount, received_date=received,
                         currency=currency, **kw)

    def dispute(self, dispute_id: str, invoice_id: str, amount: str, opened: str, reason: str = "quality",
                **kw: Any) -> Any:
        return self.send("dispute.opened", dispute_id=dispute_id, invoice_id=invoice_id, amount=amount,
                         opened_date=opened, reason=reason, **kw)

    def resolve(self, dispute_id: str, invoice_id: str, outcome: str, resolved: str, **kw: Any) -> Any:
        return self.send("dispute.resolved", dispute_id=dispute_id, invoice_id=invoice_id, outcome=outcome,
                         resolved_date=resolved, **kw)


def rebuilt_from(history: list[Any]) -> Any:
    """The aggregate that these events rebuild, each event's payload checked JSON-native first."""
    for stored in history:
        payload = {k: v for k, v in vars(stored).items()
                   if k not in ("originator_id", "originator_version", "timestamp")}
        _assert_json_native(payload, type(stored).__qualname__)
        orjson.dumps(payload)
    aggregate = None
    for stored in history:
        aggregate = stored.mutate(aggregate)
    return aggregate


def _assert_json_native(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), where
            _assert_json_native(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_json_native(item, f"{where}[{index}]")
    else:
        assert value is None or isinstance(value, str | int | bool), f"{where}: {type(value).__name__}"
