"""API keys behave alike in memory and on both databases: found by hash, listed in creation
order, revoked once, and every change audited with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from campaign_db.audit import SqlAuditLog
from campaign_db.keys import SqlKeyStore
from optimizer.memory.keys import MemoryKeyStore
from optimizer.ports.audit import AuditLog
from optimizer.ports.keys import KeyStore, NewApiKey

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


@dataclass
class Keys:
    store: KeyStore
    audit: AuditLog


@pytest.fixture
def keys(store_engine: Engine | None) -> Keys:
    if store_engine is None:
        memory = MemoryKeyStore()
        return Keys(memory, memory.audit)
    return Keys(SqlKeyStore(store_engine), SqlAuditLog(store_engine))


def new_key(name: str, *, digest: str, scopes: tuple[str, ...] = ("decide",)) -> NewApiKey:
    return NewApiKey(
        name=name, prefix="co_" + digest[:7], key_hash=digest, scopes=scopes, actor="ops", at=T0
    )


def test_a_key_is_found_by_its_hash_and_its_creation_audited(keys: Keys) -> None:
    stored = keys.store.add(new_key("crm", digest="a" * 64, scopes=("feedback", "read_logs")))

    assert keys.store.by_hash("a" * 64) == stored
    assert keys.store.by_hash("b" * 64) is None
    assert (stored.name, stored.prefix, stored.scopes) == (
        "crm",
        "co_aaaaaaa",
        ("feedback", "read_logs"),
    )
    assert (stored.created_at, stored.created_by, stored.revoked_at) == (T0, "ops", None)
    (entry,) = keys.audit.entries(action="key.")
    assert (entry.action, entry.subject, entry.actor, entry.at) == ("key.create", "crm", "ops", T0)
    assert entry.details == {"scopes": ["feedback", "read_logs"], "prefix": "co_aaaaaaa"}


def test_keys_are_listed_in_creation_order(keys: Keys) -> None:
    ids = [keys.store.add(new_key(name, digest=name * 32)).id for name in ("b", "a", "c")]
    assert len(set(ids)) == 3
    assert [k.name for k in keys.store.all()] == ["b", "a", "c"]
    assert [k.id for k in keys.store.all()] == ids


def test_a_key_is_revoked_once_and_the_revocation_audited(keys: Keys) -> None:
    stored = keys.store.add(new_key("crm", digest="a" * 64))
    at = T0 + timedelta(days=1)

    revoked = keys.store.revoke(stored.id, actor="admin", at=at)
    again = keys.store.revoke(stored.id, actor="someone else", at=at + timedelta(hours=1))

    assert revoked is not None
    assert revoked.revoked_at == at
    assert again == revoked
    assert keys.store.by_hash("a" * 64) == revoked
    (entry,) = keys.audit.entries(action="key.revoke")
    assert (entry.actor, entry.subject, entry.at, entry.details) == (
        "admin",
        "crm",
        at,
        {"id": stored.id},
    )
    assert keys.store.revoke(stored.id + 1000, actor="admin", at=at) is None
    assert len(keys.audit.entries(action="key.revoke")) == 1


def test_the_fingerprint_changes_when_a_key_is_added_or_revoked(keys: Keys) -> None:
    empty = keys.store.fingerprint()
    stored = keys.store.add(new_key("crm", digest="a" * 64))
    added = keys.store.fingerprint()
    keys.store.revoke(stored.id, actor="admin", at=T0 + timedelta(days=1))
    revoked = keys.store.fingerprint()
    keys.store.revoke(stored.id, actor="admin", at=T0 + timedelta(days=2))

    assert len({empty, added, revoked}) == 3
    assert keys.store.fingerprint() == revoked
