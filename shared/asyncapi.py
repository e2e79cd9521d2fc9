"""The AsyncAPI 3.0.0 document of every topic and event type, generated from the pydantic models.

``python -m shared.asyncapi`` writes ``docs/asyncapi.yaml``; ``python -m shared.asyncapi --check``
exits 1 when the checked-in file differs from what the models give (tests/unit/test_asyncapi.py
does the same check). Inbound types come from ``shared.erp_events`` (``EVENT_TYPES``,
``TOPIC_TYPES``), published ones from ``shared.outbound_events``; the CloudEvents envelope is
``shared.envelope.CloudEvent``, described once in ``components/schemas/CloudEvent`` and
narrowed per message (its ``type``, ``source`` and ``data``).

The output is deterministic: keys sorted, lists in a fixed order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from shared.envelope import CloudEvent
from shared.erp_events import EVENT_TYPES, TOPIC_TYPES
from shared.outbound_events import PUBLISHED, TruncatedData
from shared.values import MONEY_PATTERN

ASYNCAPI_VERSION = "3.0.0"
DOC_VERSION = "1.0.0"  # the events contract's version: raise it when a published shape changes
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
REGENERATE = "python -m shared.asyncapi"
REF = "#/components/schemas/{model}"
KAFKA_BINDING = "0.5.0"
CONTENT_TYPE = "application/json"

_HEADER = (
    "# The AsyncAPI document of the receivables platform's Kafka topics.\n"
    f"# Generated from the pydantic models by `{REGENERATE}`: do not edit by hand.\n"
)

# who consumes which topic (services/*/settings.py: INBOUND_TOPICS)
CONSUMERS: dict[str, tuple[str, ...]] = {
    "ar.invoices": ("ledger",),
    "ar.payments": ("ledger",),
    "ar.disputes": ("ledger",),
    "ar.customers": ("ledger", "dunning", "credit"),
    "ar.ratings": ("credit",),
    "ar.ledger.events": ("dunning", "credit"),
    "ar.credit.events": ("dunning",),
    "ar.dunning.actions": ("credit",),
}
# the types a consumer takes from a topic where it reads only some (the others it skips unread)
READS: dict[tuple[str, str], tuple[str, ...]] = {
    ("dunning", "ar.credit.events"): ("credit.risk_grade_changed",),
    ("credit", "ar.dunning.actions"): ("dunning.plan_broken", "dunning.resumed"),
}

_TOPIC_DESCRIPTIONS = {
    "ar.invoices": "Invoices and credit notes from the ERP.",
    "ar.payments": "Payments and their reversals from the ERP.",
    "ar.disputes": "Disputes opened and resolved in the ERP.",
    "ar.customers": "Customer profiles from the ERP (credit limit, dunning policy, contacts).",
    "ar.ratings": "Outside ratings of customers from agencies and bureaus (credit's risk score).",
    "ar.ledger.events": "The ledger's facts: invoices, applications of credits, settlements, disputes, "
                        "unapplied cash, profiles. Published by the ledger's outbox relay.",
    "ar.dunning.actions": "Dunning notices and instalment reminders, escalations, promises to pay, "
                          "payment plans, statements of account and the customers' answers to them. "
                          "Published by dunning's outbox relay.",
    "ar.credit.events": "Credit holds, limits and risk grades. Published by credit's outbox relay.",
    "ar.deadletter": "Messages a service's consumer could not apply (invalid, or refused by the "
                     "domain), with the reason and the original bytes.",
}

_INBOUND_SUMMARIES = {
    "invoice.issued": "The ERP issued an invoice.",
    "invoice.adjusted": "The ERP changed an invoice's amount.",
    "invoice.cancelled": "The ERP cancelled an invoice.",
    "invoice.written_off": "The ERP wrote off (part of) an invoice.",
    "credit_note.issued": "The ERP issued a credit note (for an invoice, or on account).",
    "payment.received": "A payment arrived, with the invoices it is allocated to (if any).",
    "payment.reversed": "A payment was reversed (bounced, charged back).",
    "payment.refunded": "Money was paid back to the customer out of its unapplied cash.",
    "prepayment.requested": "The ERP asked the customer for money in advance (a deposit on an order).",
    "prepayment.cancelled": "The ERP withdrew a prepayment request.",
    "dispute.opened": "The customer disputes (part of) an invoice.",
    "dispute.resolved": "A dispute was resolved: accepted (perhaps with a credit) or rejected.",
    "customer.upserted": "A customer's profile was created or changed in the ERP.",
    "rating.reported": "An agency or bureau rated the customer (score, grade, probability of default).",
}

_ENVELOPE_DESCRIPTIONS = {
    "specversion": "CloudEvents version: always `1.0`.",
    "id": "The message's id: `(source, id)` is its idempotency key. Published ids are derived from "
          "the stored event (`<service>:<aggregate>:<version>:<index>`), so a re-sent message has the "
          "same id: consumers dedupe on it.",
    "source": "Who sent it: the ERP's own name for inbound messages, `receivables/<service>` for "
              "published ones.",
    "type": "The event type: what `data` holds.",
    "time": "When it was recorded: ISO 8601, `Z` for UTC.",
    "subject": "The customer id, equal to the message key and to `data.customer_id` (a dead letter "
               "of a message that had no key has none).",
    "datacontenttype": "Always `application/json`.",
    "data": "The event's payload: see each message.",
}


class _ContractJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema with the contract's money: a ``Decimal`` travels as a decimal string."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        return {"type": "string", "pattern": MONEY_PATTERN, "examples": ["1250.00"],
                "description": "A decimal string such as \"1250.00\", never a JSON number."}


class _Schemas:
    """``components/schemas``: every model's JSON Schema, its ``$defs`` hoisted beside it."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF, schema_generator=_ContractJsonSchema)
        for name, definition in schema.pop("$defs", {}).items():
            self._put(name, definition)
        name = model.__name__
        self._put(name, schema)
        return {"$ref": REF.format(model=name)}

    def _put(self, name: str, schema: dict[str, Any]) -> None:
        schema = _asyncapi_schema(schema)
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name}: rename one model")


def _asyncapi_schema(schema: Any) -> Any:
    """Pydantic's OpenAPI-style ``discriminator`` object is no AsyncAPI Schema Object's (a string
    there, naming a property of the schema itself): the variants' ``const`` tells them apart."""
    if isinstance(schema, dict):
        return {k: _asyncapi_schema(v) for k, v in schema.items() if k != "discriminator"}
    if isinstance(schema, list):
        return [_asyncapi_schema(v) for v in schema]
    return schema


def _summary(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _message(event_type: str, data_ref: dict[str, Any], summary: str, *, source: str | None,
             key: str, truncatable: bool) -> dict[str, Any]:
    narrowed: dict[str, Any] = {
        "type": "object",
        "required": ["data", "type"],
        "properties": {
            "type": {"const": event_type},
            "data": {"anyOf": [data_ref, {"$ref": REF.format(model="TruncatedData")}]}
            if truncatable else data_ref,
        },
    }
    if source is not None:
        narrowed["properties"]["source"] = {"const": source}
        narrowed["required"] = ["data", "id", "source", "subject", "time", "type"]
    return {
        "name": event_type,
        "title": event_type,
        "summary": summary,
        "contentType": CONTENT_TYPE,
        "payload": {"allOf": [{"$ref": REF.format(model="CloudEvent")}, narrowed]},
        "bindings": {"kafka": {"key": {"type": "string", "description": key},
                               "bindingVersion": KAFKA_BINDING}},
    }


def build() -> dict[str, Any]:
    """The document, as plain data."""
    schemas = _Schemas()
    schemas.add(CloudEvent)  # the envelope, described once
    for name, description in _ENVELOPE_DESCRIPTIONS.items():
        schemas.schemas["CloudEvent"]["properties"][name]["description"] = description
    schemas.schemas["CloudEvent"]["description"] = (
        "The CloudEvents 1.0 envelope (structured JSON mode) every message on every topic carries.")
    schemas.add(TruncatedData)

    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    customer_key = ("The customer id (= `subject` = `data.customer_id`): a customer's messages keep "
                    "their order.")

    for topic, types in sorted(TOPIC_TYPES.items()):
        for event_type in sorted(types):
            messages[event_type] = _message(event_type, schemas.add(EVENT_TYPES[event_type]),
                                            _INBOUND_SUMMARIES[event_type], source=None, key=customer_key,
                                            truncatable=False)
        channels[topic] = _channel(topic, sorted(types))
    for topic, (_service, source, published) in sorted(PUBLISHED.items()):
        dead = topic == "ar.deadletter"
        for event_type, model in sorted(published.items()):
            key = ("The original message's key (cut to 4,000 characters); none when it had none."
                   if dead else customer_key)
            messages[event_type] = _message(event_type, schemas.add(model), _summary(model),
                                            source=source, key=key, truncatable=not dead)
        channels[topic] = _channel(topic, sorted(published))

    operations: dict[str, Any] = {}
    for topic, services in CONSUMERS.items():
        for service in services:
            wanted = sorted(READS.get((service, topic), channels[topic]["messages"]))
            operations[f"{service}.receive.{topic}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"The {service} service consumes {topic}.",
                "description": _consumes(service, topic),
                "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in wanted],
            }
    for topic, (service, _source, published) in PUBLISHED.items():
        for publisher in service.split(", "):
            operations[f"{publisher}.send.{topic}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"The {publisher} service publishes {topic}.",
                "description": _publishes(publisher, topic),
                "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in sorted(published)],
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "receivables events",
            "version": DOC_VERSION,
            "description": (
                "Every Kafka topic of the receivables platform (ledger, dunning, credit) and every event "
                "type on it. Each message is a CloudEvents 1.0 envelope in structured JSON mode "
                "(`components/schemas/CloudEvent`) whose `data` the event type names; its key is the "
                "customer id. Money is a decimal string, dates are ISO `YYYY-MM-DD` strings. Consumers "
                "dedupe on the envelope's `(source, id)`. Published types may gain fields and new types "
                "may appear: consumers skip `ledger.*` types they do not know. Generated from the "
                f"pydantic models (`shared/erp_events.py`, `shared/outbound_events.py`) by `{REGENERATE}`."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "dev": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded broker of `receivables dev` (topics of 4 partitions).",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.schemas},
    }


def _channel(topic: str, types: list[str]) -> dict[str, Any]:
    return {
        "address": topic,
        "description": _TOPIC_DESCRIPTIONS[topic],
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING}},
    }


def _consumes(service: str, topic: str) -> str:
    if topic == "ar.credit.events":
        return (f"The {service} service takes each customer's risk grade, for its assignment rules to "
                "collectors, once (by credit's order of the customer's events); the other `credit.*` "
                "types are skipped unread.")
    if topic == "ar.ledger.events":
        return (f"The {service} service follows the ledger's facts into its own accounts; `ledger.*` "
                "types it does not know are skipped, invalid messages dead-lettered.")
    if service == "ledger":
        return ("The ledger validates each message (the envelope, the type its topic carries, `data`, "
                "the key equal to `data.customer_id`) and applies it to the customer's account once "
                "(deduped on `(source, id)`); invalid or refused messages go to ar.deadletter.")
    return f"The {service} service takes each profile in (the credit limit, the dunning policy)."


def _publishes(service: str, topic: str) -> str:
    if topic == "ar.deadletter":
        return (f"The {service} service's consumer publishes a dead letter for each message it cannot "
                f"apply, before committing its batch; `source` is `receivables/{service}`.")
    return (f"The {service} service's outbox relay publishes each stored event's messages at least once, "
            "in the order of the customer's events; ids are derived from the stored event.")


def render() -> str:
    """The document as YAML text (deterministic)."""
    import yaml  # the generator's own need (PyYAML comes with the test extra and uvicorn[standard])

    text: str = yaml.safe_dump(build(), sort_keys=True, allow_unicode=True, width=100,
                               default_flow_style=False)
    return _HEADER + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.asyncapi",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the models")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help=f"default: {DOC_PATH}")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date with the models: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
