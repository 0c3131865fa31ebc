"""The API key table behind the optimizer's `KeyStore` port."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from campaign_db.audit import add_audit
from campaign_db.engine import session_scope
from campaign_db.models import ApiKey as ApiKeyRow
from optimizer.ports.keys import ApiKey, NewApiKey


def _key(row: ApiKeyRow) -> ApiKey:
    assert row.id is not None
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )


def add_api_key(session: Session, key: NewApiKey) -> ApiKey:
    row = ApiKeyRow(
        name=key.name,
        prefix=key.prefix,
        key_hash=key.key_hash,
        scopes=list(key.scopes),
        created_at=key.at,
        created_by=key.actor,
    )
    session.add(row)
    session.flush()
    add_audit(session, key.audit_entry())
    return _key(row)


def api_key_by_hash(session: Session, *, key_hash: str) -> ApiKey | None:
    row = session.exec(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)).first()
    return None if row is None else _key(row)


def api_keys(session: Session) -> list[ApiKey]:
    return [_key(row) for row in session.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.id)))]


def revoke_api_key(session: Session, *, key_id: int, actor: str, now: datetime) -> ApiKey | None:
    row = session.get(ApiKeyRow, key_id)
    if row is None or row.revoked_at is not None:
        return None if row is None else _key(row)
    row.revoked_at = now
    session.add(row)
    key = _key(row)
    add_audit(session, key.revocation(actor=actor, at=now))
    return key


class SqlKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, key: NewApiKey) -> ApiKey:
        with session_scope(self.engine, write=True) as session:
            return add_api_key(session, key)

    def by_hash(self, key_hash: str) -> ApiKey | None:
        with session_scope(self.engine) as session:
            return api_key_by_hash(session, key_hash=key_hash)

    def fingerprint(self) -> tuple[int, int]:
        with session_scope(self.engine) as session:
            keys, revoked = session.exec(
                select(func.count(col(ApiKeyRow.id)), func.count(col(ApiKeyRow.revoked_at)))
            ).one()
            return int(keys), int(revoked)

    def all(self) -> list[ApiKey]:
        with session_scope(self.engine) as session:
            return api_keys(session)

    def revoke(self, key_id: int, *, actor: str, at: datetime) -> ApiKey | None:
        with session_scope(self.engine, write=True) as session:
            return revoke_api_key(session, key_id=key_id, actor=actor, now=at)
