"""API keys in memory."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime

from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.keys import ApiKey, NewApiKey


class MemoryKeyStore:
    def __init__(self, audit: MemoryAuditLog | None = None) -> None:
        self.audit = audit if audit is not None else MemoryAuditLog()
        self._keys: list[ApiKey] = []
        self._hashes: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, key: NewApiKey) -> ApiKey:
        with self._lock:
            if key.key_hash in self._hashes:
                raise ValueError("key_hash: a key with this hash exists")
            stored = ApiKey(
                id=len(self._keys) + 1,
                name=key.name,
                prefix=key.prefix,
                scopes=key.scopes,
                created_at=key.at,
                created_by=key.actor,
            )
            self._keys.append(stored)
            self._hashes[key.key_hash] = stored.id
            self.audit.add(key.audit_entry())
        return stored

    def by_hash(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            key_id = self._hashes.get(key_hash)
            return None if key_id is None else self._keys[key_id - 1]

    def fingerprint(self) -> tuple[int, int]:
        with self._lock:
            return len(self._keys), sum(1 for k in self._keys if k.revoked_at is not None)

    def all(self) -> list[ApiKey]:
        with self._lock:
            return list(self._keys)

    def revoke(self, key_id: int, *, actor: str, at: datetime) -> ApiKey | None:
        with self._lock:
            if not 1 <= key_id <= len(self._keys):
                return None
            key = self._keys[key_id - 1]
            if key.revoked_at is not None:
                return key
            revoked = replace(key, revoked_at=at)
            self._keys[key_id - 1] = revoked
            self.audit.add(revoked.revocation(actor=actor, at=at))
        return revoked
