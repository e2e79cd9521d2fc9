"""The console's settings, read from ``RECEIVABLES_*`` environment variables (the contract's
"The console and the customer portal")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import check_auth

# Shorter than this, a secret is guessable in an afternoon: refused.
MIN_SECRET_LENGTH = 32


class ConsoleSettings(BaseSettings):
    """Where the three services are, how sessions and portal links are signed, whom customers pay."""

    model_config = SettingsConfigDict(env_prefix="RECEIVABLES_", extra="ignore", frozen=True)

    # Signs (and, for sessions, encrypts) what the console hands to browsers. `receivables dev`
    # makes one per data dir when unset; `serve` refuses to start without one.
    console_secret: str | None = None
    creditor_name: str = "Receivables Demo GmbH"
    creditor_iban: str = "DE89370400440532013000"
    creditor_bic: str | None = "COBADEFFXXX"
    # The payment provider's shared secret; unset, every webhook call is refused (401).
    payment_webhook_secret: str | None = None
    # The provider names `POST /payments/webhook/{provider}` takes (comma-separated); unset: any.
    payment_providers: str = ""
    ledger_url: str = "http://127.0.0.1:8001"
    dunning_url: str = "http://127.0.0.1:8002"
    credit_url: str = "http://127.0.0.1:8003"
    # The console's own token, for what the portal asks on a customer's behalf (ledger:read,
    # dunning:read, dunning:write) and for matching a provider's payment to invoices.
    console_token: str | None = None
    api_tokens_file: Path | None = None
    auth: Literal["enabled", "disabled"] = "enabled"
    dev_mode: bool = False
    kafka_bootstrap: str = "127.0.0.1:9092"
    # A page waits this long for a service before it says the service is not answering.
    backend_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # A session ends this long after sign-in however it is used, and after this long unused.
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    portal_link_days: int = Field(default=30, ge=1, le=366)
    # Every portal link issued before this instant is refused (revokes all links given out).
    portal_links_not_before: datetime | None = None
    # Portal links refused by id (comma-separated; the link_id POST /portal-links answered).
    portal_revoked_links: str = ""
    # Where `POST /portal-links` URLs point (the console as customers reach it).
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("portal_links_not_before")
    @classmethod
    def _utc_unless_said(cls, value: datetime | None) -> datetime | None:
        # A naive instant cannot be compared with a link's (aware) signing time: read it as UTC,
        # as the operator of a server most likely meant, rather than fail every link later.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.console_secret is None:
            raise ValueError("RECEIVABLES_CONSOLE_SECRET is required: it signs sessions and portal links")
        if len(self.console_secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"RECEIVABLES_CONSOLE_SECRET: at least {MIN_SECRET_LENGTH} characters")
        check_auth(self.auth, self.dev_mode, self.api_tokens_file)
        return self

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "enabled"

    @property
    def revoked_link_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.portal_revoked_links.split(",") if part.strip())

    @property
    def payment_provider_names(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.payment_providers.split(",") if part.strip())

    def service_urls(self) -> dict[str, str]:
        return {"ledger": self.ledger_url, "dunning": self.dunning_url, "credit": self.credit_url}


def dev_secret(data_dir: Path) -> str:
    """The console secret of a `receivables dev` data dir: made once, kept in the dir (0600)."""
    import secrets

    path = data_dir / "console-secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()
