"""Customer profiles and consents, as the CRM maintains them."""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.engine import session_scope, truncate_wal
from campaign_db.models import AuditLog, Channel, Customer, CustomerPublic, CustomerUpsert
from optimizer.core.values import JsonBool, NulFreeStr, Timestamp, utcnow
from optimizer.errors import NotFoundError

log = logging.getLogger("campopt.customers")


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: JsonBool
    source: NulFreeStr = Field(default="api", max_length=64)
    changed_at: Timestamp | None = None


class ConsentPublic(BaseModel):
    customer_id: str
    channel: str
    granted: bool
    source: str
    changed_at: datetime


def _public(customer: Customer, consents: dict[str, bool]) -> CustomerPublic:
    return CustomerPublic(**customer.model_dump(), consents=consents)


def upsert_customer(
    engine: Engine, *, customer_id: str, data: CustomerUpsert, now: datetime | None = None
) -> tuple[CustomerPublic, bool]:
    with session_scope(engine, write=True) as session:
        customer, created = queries.upsert_customer(
            session, customer_id=customer_id, data=data, now=now or utcnow()
        )
        consents = {
            c.channel_key: c.granted for c in queries.consents_of(session, customer_id=customer_id)
        }
        return _public(customer, consents), created


def get_customer(engine: Engine, *, customer_id: str) -> CustomerPublic:
    with session_scope(engine) as session:
        customer = queries.get_customer(session, customer_id=customer_id)
        if customer is None:
            raise NotFoundError("customer_id", f"unknown customer {customer_id!r}")
        consents = {
            c.channel_key: c.granted for c in queries.consents_of(session, customer_id=customer_id)
        }
        return _public(customer, consents)


def set_consent(
    engine: Engine, *, customer_id: str, channel: str, update: ConsentUpdate
) -> ConsentPublic:
    """Grant or revoke one channel; it holds for the very next decision (same database)."""
    at = update.changed_at or utcnow()
    with session_scope(engine, write=True) as session:
        if queries.lock_customer(session, customer_id=customer_id) is None:
            raise NotFoundError("customer_id", f"unknown customer {customer_id!r}")
        if session.get(Channel, channel) is None:
            raise NotFoundError("channel", f"unknown channel {channel!r}")
        consent = queries.set_consent(
            session,
            customer_id=customer_id,
            channel_key=channel,
            granted=update.granted,
            source=update.source,
            at=at,
        )
        session.add(
            AuditLog(
                at=utcnow(),
                actor=update.source,
                action="consent.grant" if update.granted else "consent.revoke",
                subject=f"{customer_id}/{channel}",
            )
        )
        return ConsentPublic(
            customer_id=customer_id,
            channel=channel,
            granted=consent.granted,
            source=consent.source,
            changed_at=consent.changed_at,
        )


class ErasureResult(BaseModel):
    customer_id: str
    pseudonym: str
    erased: bool


def erase_customer(engine: Engine, *, customer_id: str, salt: str, actor: str) -> ErasureResult:
    """GDPR erasure: profile, consents, contact history, usage and outbox entries are deleted;
    decision logs and conversions keep their statistics under a pseudonym. On SQLite the WAL
    is emptied afterwards, so the raw id does not linger there."""
    with session_scope(engine, write=True) as session:
        erased = queries.erase_customer(
            session, customer_id=customer_id, salt=salt, actor=actor, now=utcnow()
        )
    if not erased:
        raise NotFoundError("customer_id", f"unknown customer {customer_id!r}")
    if not truncate_wal(engine):
        log.warning("erasure committed, but the SQLite WAL could not be emptied: readers busy")
    return ErasureResult(
        customer_id=customer_id, pseudonym=queries.pseudonym(customer_id, salt), erased=True
    )
