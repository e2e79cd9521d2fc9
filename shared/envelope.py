"""The CloudEvents 1.0 envelope (structured JSON mode) every topic carries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.values import NO_NUL_NOT_EMPTY


class CloudEvent(BaseModel):
    """One message: ``(source, id)`` is its idempotency key, ``subject`` the customer id."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # bounded, and no NUL character (PostgreSQL refuses one in text; the audit trail shows them)
    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=500, pattern=NO_NUL_NOT_EMPTY)
    source: str = Field(min_length=1, max_length=500, pattern=NO_NUL_NOT_EMPTY)
    type: str = Field(min_length=1, max_length=100)
    time: datetime | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL_NOT_EMPTY)
    datacontenttype: str | None = "application/json"
    data: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        """The idempotency key as one string (a separator no id or source contains)."""
        return f"{self.source}\x1f{self.id}"


def encode_event(
    *,
    event_id: str,
    source: str,
    event_type: str,
    subject: str | None,
    data: dict[str, Any],
    time: datetime | str | None = None,
) -> bytes:
    """Serialize an outbound CloudEvent; ``data`` must already be JSON-native.

    ``time`` may be given already formatted (``format_time``) so one event's several
    messages format their shared timestamp once. Without a ``subject`` (a dead letter of a
    message that had no key) the attribute is left out: CloudEvents allows no empty one.
    """
    if not isinstance(time, str):
        time = format_time(time or datetime.now(UTC))
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": time,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is None:
        del envelope["subject"]
    return orjson.dumps(envelope)


def format_time(time: datetime) -> str:
    """An envelope's ``time``: ISO 8601 with a ``Z`` for UTC."""
    return time.isoformat().replace("+00:00", "Z")
