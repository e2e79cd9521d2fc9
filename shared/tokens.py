"""Bearer tokens: the scopes the contract names, who holds a token, and the tokens file.

Tokens come from the JSON file named by ``RECEIVABLES_API_TOKENS_FILE``, in either form::

    {"<token>": ["ledger:read", "ledger:write"]}
    {"<token>": {"name": "erp-bridge", "scopes": ["ledger:write"]}}

The settings check the file when they are read (``shared.settings``); the REST APIs check a
request's token against the registry (``shared.auth``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final


class Scopes:
    """Every scope the contract names."""

    LEDGER_READ: Final = "ledger:read"
    LEDGER_WRITE: Final = "ledger:write"
    DUNNING_READ: Final = "dunning:read"
    DUNNING_WRITE: Final = "dunning:write"
    DUNNING_APPROVE: Final = "dunning:approve"  # payment plans: four eyes
    CREDIT_READ: Final = "credit:read"
    CREDIT_CHECK: Final = "credit:check"
    CREDIT_WRITE: Final = "credit:write"
    CREDIT_OVERRIDE: Final = "credit:override"
    OPS_REPLAY: Final = "ops:replay"
    PORTAL_ADMIN: Final = "portal:admin"

    ALL: Final = frozenset(
        {
            LEDGER_READ,
            LEDGER_WRITE,
            DUNNING_READ,
            DUNNING_WRITE,
            DUNNING_APPROVE,
            CREDIT_READ,
            CREDIT_CHECK,
            CREDIT_WRITE,
            CREDIT_OVERRIDE,
            OPS_REPLAY,
            PORTAL_ADMIN,
        }
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: a non-secret ``identity`` (for audit trails) and the scopes granted."""

    identity: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        """True if this caller was granted ``scope``."""
        return scope in self.scopes


class TokenFileError(ValueError):
    """The tokens file is missing, unreadable, or not of the documented shape."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _default_identity(digest: bytes) -> str:
    # The first 8 hex digits of the token's sha256: stable, and safe to log.
    return f"token:{digest.hex()[:8]}"


class TokenRegistry:
    """The known tokens, kept only as sha256 digests, each with its :class:`Principal`."""

    def __init__(self, principals_by_digest: Mapping[bytes, Principal] | None = None) -> None:
        self._principals_by_digest = dict(principals_by_digest or {})

    def __len__(self) -> int:
        return len(self._principals_by_digest)

    @classmethod
    def from_mapping(cls, data: object) -> TokenRegistry:
        """Build from the parsed tokens file; raises :class:`TokenFileError` naming the bad entry.

        Error messages name a token by its identity, never by the token itself.
        """
        if not isinstance(data, dict):
            raise TokenFileError('expected a JSON object {"<token>": ["scope", ...]}')
        principals: dict[bytes, Principal] = {}
        for token, entry in data.items():
            if not token or token != token.strip() or any(c.isspace() for c in token):
                raise TokenFileError("a token is empty or contains whitespace")
            digest = _digest(token)
            identity = _default_identity(digest)
            if isinstance(entry, dict):
                unexpected = entry.keys() - {"name", "scopes"}
                if unexpected:
                    raise TokenFileError(f"{identity}: unexpected keys {sorted(unexpected)}")
                name = entry.get("name", identity)
                if not isinstance(name, str) or not name.strip():
                    raise TokenFileError(f"{identity}: 'name' must be a non-empty string")
                identity, scopes = name, entry.get("scopes")
            else:
                scopes = entry
            if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
                raise TokenFileError(f"{identity}: scopes must be a list of strings")
            unknown = set(scopes) - Scopes.ALL
            if unknown:
                raise TokenFileError(
                    f"{identity}: unknown scopes {sorted(unknown)}; known: {', '.join(sorted(Scopes.ALL))}"
                )
            principals[digest] = Principal(identity, frozenset(scopes))
        return cls(principals)

    @classmethod
    def from_file(cls, path: Path) -> TokenRegistry:
        """Load the tokens file; raises :class:`TokenFileError` if it is missing or malformed."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TokenFileError(f"{path} does not exist") from None
        except OSError as error:
            raise TokenFileError(f"{path} cannot be read: {error.strerror or error}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise TokenFileError(f"{path} is not valid JSON: {error}") from None
        try:
            return cls.from_mapping(data)
        except TokenFileError as error:
            raise TokenFileError(f"{path}: {error}") from None

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None if the token is unknown."""
        digest = _digest(token)
        # Every known digest is compared, in constant time, so timing tells nothing about
        # which token (if any) matched; the registry holds a handful of tokens.
        found = None
        for known_digest, principal in self._principals_by_digest.items():
            if hmac.compare_digest(known_digest, digest):
                found = principal
        return found
