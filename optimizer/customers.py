"""Customer profiles and consents, as the CRM maintains them, and their erasure."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from optimizer.core.values import JsonBool, NulFreeStr, Timestamp, utcnow
from optimizer.errors import NotFoundError
from optimizer.ports.audit import AuditEntry
from optimizer.ports.customers import (
    Consent,
    CustomerStore,
    Profile,
    StoredCustomer,
    UnknownChannelError,
    UnknownCustomerError,
)


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


class ErasureResult(BaseModel):
    customer_id: str
    pseudonym: str
    erased: bool


def _unknown_customer(customer_id: str) -> NotFoundError:
    return NotFoundError("customer_id", f"unknown customer {customer_id!r}")


def upsert_customer(
    store: CustomerStore, *, customer_id: str, data: Profile, now: datetime | None = None
) -> tuple[StoredCustomer, bool]:
    """Create or replace a profile; the stored customer and whether it was created."""
    return store.upsert(customer_id=customer_id, profile=data, now=now or utcnow())


def get_customer(store: CustomerStore, *, customer_id: str) -> StoredCustomer:
    customer = store.get(customer_id=customer_id)
    if customer is None:
        raise _unknown_customer(customer_id)
    return customer


def set_consent(
    store: CustomerStore, *, customer_id: str, channel: str, update: ConsentUpdate
) -> ConsentPublic:
    """Grant or revoke one channel; it holds for the very next decision (same database)."""
    consent = Consent(
        customer_id=customer_id,
        channel=channel,
        granted=update.granted,
        source=update.source,
        changed_at=update.changed_at or utcnow(),
    )
    audit = AuditEntry(
        at=utcnow(),
        actor=update.source,
        action="consent.grant" if update.granted else "consent.revoke",
        subject=f"{customer_id}/{channel}",
    )
    try:
        stored = store.set_consent(consent, audit=audit)
    except UnknownCustomerError:
        raise _unknown_customer(customer_id) from None
    except UnknownChannelError:
        raise NotFoundError("channel", f"unknown channel {channel!r}") from None
    return ConsentPublic(
        customer_id=stored.customer_id,
        channel=stored.channel,
        granted=stored.granted,
        source=stored.source,
        changed_at=stored.changed_at,
    )


def erase_customer(
    store: CustomerStore, *, customer_id: str, salt: str, actor: str
) -> ErasureResult:
    """GDPR erasure: profile, consents, contact history, usage and outbox entries are deleted;
    decision logs and conversions keep their statistics under a pseudonym."""
    alias = store.erase(customer_id=customer_id, salt=salt, actor=actor, now=utcnow())
    if alias is None:
        raise _unknown_customer(customer_id)
    return ErasureResult(customer_id=customer_id, pseudonym=alias, erased=True)
