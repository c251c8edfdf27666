"""API keys: which client is calling and what it may do.

Keys are held only as SHA-256 digests. A presented key is hashed and compared with every configured digest
with ``hmac.compare_digest`` and no early exit, so the time taken says nothing about the keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from activity_service.domain.activity import DEFAULT_TENANT
from activity_service.infrastructure.settings import ApiKey

WRITE = "activities:write"
READ = "activities:read"
READ_PII = "activities:read-pii"
ERASE = "activities:erase"
ALL_SCOPES = frozenset({WRITE, READ, READ_PII, ERASE})
# Longer than any key anyone configures; bounds the hashing work a request can cause.
MAX_PRESENTED_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: an API key's name and its tenant, or the client address when auth is off (then the
    tenant is the default one)."""

    name: str
    scopes: frozenset[str]
    bucket: str
    """Whose rate-limit budget the request spends."""
    tenant: str = DEFAULT_TENANT
    """Whose events it writes and reads: only its own."""
    source: str | None = None
    """What an event it writes records as its source: the key's name (none without auth)."""
    origins: frozenset[str] | None = None
    """A publishable key's web origins, the only ones it is taken from; None for a secret key."""

    @property
    def publishable(self) -> bool:
        return self.origins is not None

    @classmethod
    def for_key(
        cls,
        name: str,
        scopes: Iterable[str],
        tenant: str = DEFAULT_TENANT,
        origins: Iterable[str] | None = None,
    ) -> Client:
        return cls(
            name=name,
            scopes=frozenset(scopes),
            bucket=f"key:{name}",
            tenant=tenant,
            source=name,
            origins=None if origins is None else frozenset(origins),
        )

    @classmethod
    def anonymous(cls, address: str | None) -> Client:
        return cls(name="anonymous", scopes=ALL_SCOPES, bucket=f"address:{address or 'unknown'}")


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    client: Client


class ApiKeys:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._entries = tuple(
            _Entry(k.digest, Client.for_key(k.name, k.scopes, k.tenant, k.origins if k.publishable else None))
            for k in keys
        )

    @property
    def origins(self) -> frozenset[str]:
        """Every origin some publishable key is taken from."""
        return frozenset(origin for entry in self._entries for origin in entry.client.origins or ())

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str) -> Client | None:
        """The client holding ``presented``, or None when no configured key matches."""
        if len(presented) > MAX_PRESENTED_LENGTH:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.client
        return found
