"""Settings every service shares, read from ``RECEIVABLES_*`` environment variables.

A service builds its settings with :meth:`ServiceSettings.for_service`, which lets
``RECEIVABLES_<SERVICE>_DATABASE_URL`` override the common ``RECEIVABLES_DATABASE_URL``.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.money import MAX_AMOUNT
from shared.tokens import TokenFileError, TokenRegistry

SERVICES = ("ledger", "dunning", "credit")


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
    return value


# The time zone a daily run's local time is in (dunning's runs, credit's reviews): an IANA name.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


def check_auth(auth: str, dev_mode: bool, tokens_file: Path | None) -> None:
    """What a process serving bearer tokens (a service, the console) refuses at start: auth
    disabled outside ``receivables dev``, a tokens file it cannot read."""
    if auth == "disabled" and not dev_mode:
        raise ValueError(
            "RECEIVABLES_AUTH=disabled is refused: auth can only be disabled under `receivables dev`; "
            "give the services a tokens file with RECEIVABLES_API_TOKENS_FILE instead"
        )
    if auth == "enabled" and tokens_file is not None:
        try:
            TokenRegistry.from_file(tokens_file)
        except TokenFileError as error:
            raise ValueError(f"RECEIVABLES_API_TOKENS_FILE: {error}") from None


class ServiceSettings(BaseSettings):
    """Connection, auth and batching settings common to the ledger, dunning and credit services."""

    model_config = SettingsConfigDict(env_prefix="RECEIVABLES_", extra="ignore", frozen=True)

    service_name: str | None = None
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "sqlite:///./.receivables/receivables.db"
    api_tokens_file: Path | None = None
    auth: Literal["enabled", "disabled"] = "enabled"
    # Set by `receivables dev` only; the one situation in which auth may be turned off.
    dev_mode: bool = False
    consumer_group: str | None = None
    batch_max_records: int = Field(default=2000, gt=0)
    batch_timeout_ms: int = Field(default=200, ge=0)
    # Tansu holds a group join for half the session timeout: short sessions start fast.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    # Where the projections and the outbox relay run: a child process of the service (a
    # core of their own) or "inline" in the service's process (one process fewer).
    followers: Literal["process", "inline"] = "process"
    # Rows an online replay of the ledger may hold in memory (about 1 KB each) before it
    # writes them out and goes on reading rows back from its tables.
    replay_memory_rows: int = Field(default=3_000_000, ge=0)
    # The business's largest amount in one inbound message (larger ones are dead-lettered);
    # it may be lower than, never above, what every store can hold (shared.money.MAX_AMOUNT).
    max_amount: Decimal = Field(default=MAX_AMOUNT, gt=0, le=MAX_AMOUNT)
    # A follower or the consumer failing on the same event for longer than this is stuck:
    # /health/ready answers 503 naming it (it keeps retrying; see shared.stalls).
    stuck_after_seconds: float = Field(default=60.0, gt=0)
    # How many days past today (UTC) a run, review or other forward-only date may lie: a
    # caller a time zone ahead is already on tomorrow.
    future_date_tolerance_days: int = Field(default=1, ge=0, le=366)
    # Where dunning and credit ask the ledger for payment predictions (its REST API, a token
    # with ledger:read if auth is on); unset, they work without predictions and say so.
    ledger_url: str | None = None
    ledger_token: str | None = None

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        check_auth(self.auth, self.dev_mode, self.api_tokens_file)
        return self

    @property
    def auth_enabled(self) -> bool:
        """True unless ``RECEIVABLES_AUTH=disabled`` (possible under ``receivables dev`` only)."""
        return self.auth == "enabled"

    @classmethod
    def taking(cls, settings: ServiceSettings | None, name: str) -> Self:
        """This kind of settings for service ``name``: read as ``for_service`` reads them when
        none are given, else the given ones (of another kind: their values, taken again)."""
        if settings is None:
            return cls.for_service(name)
        return settings if isinstance(settings, cls) else cls(**settings.model_dump())

    @classmethod
    def for_service(cls, name: str, **overrides: Any) -> Self:
        """Settings for one service: its own ``RECEIVABLES_<NAME>_DATABASE_URL`` wins over the common one.

        Keyword ``overrides`` (e.g. from command-line options) win over both.
        """
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")
        values: dict[str, Any] = {"service_name": name}
        own_database_url = os.environ.get(f"RECEIVABLES_{name.upper()}_DATABASE_URL")
        if own_database_url:
            values["database_url"] = own_database_url
        values.update(overrides)
        return cls(**values)
