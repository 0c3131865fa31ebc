"""Customer profiles, their consents and their erasure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from optimizer.ports.audit import AuditEntry

AttributeValue = str | int | float | bool | None


class UnknownCustomerError(LookupError):
    """A store was asked about a customer it does not hold."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(customer_id)
        self.customer_id = customer_id


class UnknownChannelError(LookupError):
    """A consent names a channel the catalog does not have."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.channel = channel


@dataclass(frozen=True)
class Profile:
    """What the CRM states about a customer; an upsert replaces all of it."""

    health_class: str = "B"
    usage_index: float = 0.5
    customer_since: date | None = None
    time_zone: str = "Europe/Berlin"
    language: str = "de"
    attributes: Mapping[str, AttributeValue] | None = None


@dataclass(frozen=True)
class StoredCustomer:
    customer_id: str
    profile: Profile
    created_at: datetime
    updated_at: datetime
    consents: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Consent:
    """One channel's consent; the latest change wins."""

    customer_id: str
    channel: str
    granted: bool
    source: str
    changed_at: datetime


class CustomerStore(Protocol):
    def upsert(
        self, *, customer_id: str, profile: Profile, now: datetime
    ) -> tuple[StoredCustomer, bool]:
        """Create or replace a profile; the stored customer and whether it was created."""
        ...

    def get(self, *, customer_id: str) -> StoredCustomer | None: ...

    def import_customers(
        self,
        customers: Sequence[tuple[str, Profile]],
        *,
        granted: Sequence[tuple[str, str]],
        now: datetime,
    ) -> None:
        """Create many new customers and their granted (customer, channel) consents at once
        (imports, simulations), without an audit entry per consent."""
        ...

    def set_consent(self, consent: Consent, *, audit: AuditEntry) -> Consent:
        """Store the consent and its audit entry together. Raises `UnknownCustomerError` or
        `UnknownChannelError`, and then writes nothing."""
        ...

    def erase(self, *, customer_id: str, salt: str, actor: str, now: datetime) -> str | None:
        """Forget the person: profile, consents, contacts, usage and outbox entries go; what is
        kept for statistics (decision logs, conversions, audit subjects) moves to the pseudonym,
        and the erasure is audited. The pseudonym, or None for an unknown customer."""
        ...
