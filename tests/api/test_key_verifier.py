"""Issuing and verifying keys on the in-memory store: no database needed."""

from __future__ import annotations

import pytest

from api.auth import KeyVerifier, hash_key, issue_key
from optimizer.core.values import utcnow
from optimizer.memory.keys import MemoryKeyStore
from optimizer.ports.keys import ApiKey, NewApiKey


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


def test_a_revoked_key_stops_verifying_at_the_next_fingerprint_check() -> None:
    keys = MemoryKeyStore()
    key_id, key = issue_key(keys, name="crm", scopes=["decide"], actor="ops")
    cached, fresh = KeyVerifier(keys, ttl=60.0), KeyVerifier(keys, ttl=0.0)
    assert cached.verify(key) is not None

    keys.revoke(key_id, actor="admin", at=utcnow())

    assert cached.verify(key) is not None
    assert cached.cached(key) == (True, cached.verify(key))
    assert fresh.verify(key) is None
    assert fresh.verify("co_unknown") is None


class CountingKeys(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def by_hash(self, key_hash: str) -> ApiKey | None:
        self.lookups += 1
        return super().by_hash(key_hash)


def test_a_known_key_is_looked_up_once_until_the_keys_change() -> None:
    keys = CountingKeys()
    _, key = issue_key(keys, name="crm", scopes=["decide"], actor="ops")
    verifier = KeyVerifier(keys, ttl=0.0)  # checks the fingerprint on every call

    assert verifier.cached(key) == (False, None)
    for _ in range(5):
        assert verifier.verify(key) is not None
    assert keys.lookups == 1

    issue_key(keys, name="other", scopes=["read_logs"], actor="ops")
    assert verifier.verify(key) is not None
    assert keys.lookups == 2


def test_an_unknown_key_verifies_once_it_is_issued() -> None:
    keys = MemoryKeyStore()
    verifier = KeyVerifier(keys, ttl=0.0)
    key = "co_" + "x" * 43
    assert verifier.verify(key) is None
    keys.add(
        NewApiKey(
            name="late",
            prefix=key[:10],
            key_hash=hash_key(key),
            scopes=("decide",),
            actor="ops",
            at=utcnow(),
        )
    )
    assert verifier.verify(key) is not None


@pytest.mark.parametrize("scopes", [[], ["decide", "superuser"]])
def test_unknown_or_missing_scopes_are_refused(scopes: list[str]) -> None:
    keys = MemoryKeyStore()
    with pytest.raises(ValueError, match="scopes"):
        issue_key(keys, name="x", scopes=scopes, actor="ops")
    assert keys.all() == []
