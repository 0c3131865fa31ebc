"""Customer profiles and consents in memory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from optimizer.core.privacy import pseudonym
from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.audit import AuditEntry
from optimizer.ports.customers import (
    Consent,
    Profile,
    StoredCustomer,
    UnknownChannelError,
    UnknownCustomerError,
)


@dataclass
class _Customer:
    profile: Profile
    created_at: datetime
    updated_at: datetime


class MemoryCustomerStore:
    """`channels` are the catalog's channel keys, the ones a consent may name. The outbox store
    in memory shares this store's customers (their health class) and forgets with them."""

    def __init__(self, *, channels: Iterable[str], audit: MemoryAuditLog | None = None) -> None:
        self.channels = frozenset(channels)
        self.audit = audit if audit is not None else MemoryAuditLog()
        self.lock = threading.RLock()
        self._customers: dict[str, _Customer] = {}
        self._consents: dict[tuple[str, str], Consent] = {}
        self._forget: list[Callable[[str], None]] = []

    def upsert(
        self, *, customer_id: str, profile: Profile, now: datetime
    ) -> tuple[StoredCustomer, bool]:
        with self.lock:
            known = self._customers.get(customer_id)
            created_at = now if known is None else known.created_at
            self._customers[customer_id] = _Customer(profile, created_at, now)
            return self._stored(customer_id), known is None

    def import_customers(
        self,
        customers: Sequence[tuple[str, Profile]],
        *,
        granted: Sequence[tuple[str, str]],
        now: datetime,
    ) -> None:
        with self.lock:
            for customer_id, profile in customers:
                self._customers[customer_id] = _Customer(profile, now, now)
            for customer_id, channel in granted:
                self._consents[(customer_id, channel)] = Consent(
                    customer_id=customer_id,
                    channel=channel,
                    granted=True,
                    source="import",
                    changed_at=now,
                )

    def get(self, *, customer_id: str) -> StoredCustomer | None:
        with self.lock:
            return self._stored(customer_id) if customer_id in self._customers else None

    def set_consent(self, consent: Consent, *, audit: AuditEntry) -> Consent:
        with self.lock:
            if consent.customer_id not in self._customers:
                raise UnknownCustomerError(consent.customer_id)
            if consent.channel not in self.channels:
                raise UnknownChannelError(consent.channel)
            self._consents[(consent.customer_id, consent.channel)] = consent
            self.audit.add(audit)
        return consent

    def erase(self, *, customer_id: str, salt: str, actor: str, now: datetime) -> str | None:
        alias = pseudonym(customer_id, salt)
        with self.lock:
            if self._customers.pop(customer_id, None) is None:
                return None
            for key in [k for k in self._consents if k[0] == customer_id]:
                del self._consents[key]
            for forget in self._forget:
                forget(customer_id)
            self.audit.rename_subject(customer_id, alias)
            self.audit.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action="customer.erase",
                    subject=alias,
                    details={"pseudonym": alias},
                )
            )
        return alias

    # --- shared with the outbox store in memory ------------------------------------------------

    def on_erase(self, forget: Callable[[str], None]) -> None:
        """Call `forget(customer_id)` inside every erasure."""
        self._forget.append(forget)

    def health_class_of(self, customer_id: str) -> str | None:
        with self.lock:
            known = self._customers.get(customer_id)
            return None if known is None else known.profile.health_class

    def observe(
        self, customer_id: str, *, health_class: str, usage_index: float, at: datetime
    ) -> None:
        with self.lock:
            known = self._customers[customer_id]
            known.profile = replace(
                known.profile, health_class=health_class, usage_index=usage_index
            )
            known.updated_at = at

    def _stored(self, customer_id: str) -> StoredCustomer:
        known = self._customers[customer_id]
        return StoredCustomer(
            customer_id=customer_id,
            profile=known.profile,
            created_at=known.created_at,
            updated_at=known.updated_at,
            consents={
                channel: c.granted
                for (owner, channel), c in self._consents.items()
                if owner == customer_id
            },
        )
