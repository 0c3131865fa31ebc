"""Issuing and verifying keys on the in-memory store: no database needed."""

from __future__ import annotations

import pytest

from api.auth import KeyVerifier, hash_key, issue_key
from optimizer.core.values import utcnow
from optimizer.memory.keys import MemoryKeyStore


def test_an_issued_key_verifies_with_its_scopes_and_only_its_hash_is_stored() -> None:
    keys = MemoryKeyStore()
    key_id, key = issue_key(keys, name="crm", scopes=["feedback", "read_logs"], actor="ops")

    principal = KeyVerifier(keys).verify(key)

    assert principal is not None
    assert principal.name == "crm"
    assert principal.allows("feedback")
    assert not principal.allows("approve")
    stored = keys.by_hash(hash_key(key))
    assert stored is not None
    assert stored.id == key_id
    assert key not in repr(stored)


def test_a_revoked_key_stops_verifying_once_the_cache_expires() -> None:
    keys = MemoryKeyStore()
    key_id, key = issue_key(keys, name="crm", scopes=["decide"], actor="ops")
    cached, fresh = KeyVerifier(keys, ttl=60.0), KeyVerifier(keys, ttl=0.0)
    assert cached.verify(key) is not None

    keys.revoke(key_id, actor="admin", at=utcnow())

    assert cached.verify(key) is not None
    assert fresh.verify(key) is None
    assert fresh.verify("co_unknown") is None


@pytest.mark.parametrize("scopes", [[], ["decide", "superuser"]])
def test_unknown_or_missing_scopes_are_refused(scopes: list[str]) -> None:
    keys = MemoryKeyStore()
    with pytest.raises(ValueError, match="scopes"):
        issue_key(keys, name="x", scopes=scopes, actor="ops")
    assert keys.all() == []
