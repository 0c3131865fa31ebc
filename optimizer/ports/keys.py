"""API keys: only a key's hash is stored; creating and revoking one is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from optimizer.ports.audit import AuditEntry


@dataclass(frozen=True)
class NewApiKey:
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[str, ...]
    actor: str
    at: datetime

    def audit_entry(self) -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            action="key.create",
            subject=self.name,
            at=self.at,
            details={"scopes": list(self.scopes), "prefix": self.prefix},
        )


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    def revocation(self, *, actor: str, at: datetime) -> AuditEntry:
        return AuditEntry(
            actor=actor, action="key.revoke", subject=self.name, at=at, details={"id": self.id}
        )


class KeyStore(Protocol):
    def add(self, key: NewApiKey) -> ApiKey:
        """Store the key and its `key.create` audit entry in one transaction."""
        ...

    def by_hash(self, key_hash: str) -> ApiKey | None: ...

    def fingerprint(self) -> tuple[int, int]:
        """(keys, revoked keys): it changes whenever a key is added or revoked, so a cache of
        verified keys knows when to forget them."""
        ...

    def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, in the order they were created."""
        ...

    def revoke(self, key_id: int, *, actor: str, at: datetime) -> ApiKey | None:
        """Revoke the key and audit it in one transaction; a key revoked already comes back
        unchanged (no second entry), an unknown id as None."""
        ...
