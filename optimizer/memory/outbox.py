"""Usage, health-class changes and the outbox in memory, over the customers in memory."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from optimizer.memory.customers import MemoryCustomerStore
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.outbox import (
    AckedContact,
    Emission,
    LeasedContact,
    PendingEmission,
    QueuedContact,
    TriggerTable,
    UsageApplied,
    UsageObservation,
)


@dataclass
class _Change:
    id: int
    customer_id: str
    trigger: str | None
    changed_at: datetime
    decision_id: uuid.UUID | None = None


@dataclass
class _Queued:
    id: int
    contact: QueuedContact
    status: str = "pending"
    leased_until: datetime | None = None
    acked_at: datetime | None = None


class MemoryOutboxStore:
    def __init__(self, customers: MemoryCustomerStore) -> None:
        self.customers = customers
        self._changes: list[_Change] = []
        self._outbox: list[_Queued] = []
        self._change_ids = itertools.count(1)
        self._outbox_ids = itertools.count(1)
        customers.on_erase(self._forget)

    def apply_usage(
        self, observations: Sequence[UsageObservation], *, triggers: TriggerTable
    ) -> list[UsageApplied]:
        with self.customers.lock:
            for o in observations:
                if self.customers.health_class_of(o.customer_id) is None:
                    raise UnknownCustomerError(o.customer_id)
            applied = []
            for o in observations:
                previous = self.customers.health_class_of(o.customer_id)
                assert previous is not None
                trigger = (
                    None if previous == o.health_class else triggers.get((previous, o.health_class))
                )
                self.customers.observe(
                    o.customer_id,
                    health_class=o.health_class,
                    usage_index=o.usage_index,
                    at=o.observed_at,
                )
                if previous != o.health_class:
                    self._changes.append(
                        _Change(next(self._change_ids), o.customer_id, trigger, o.observed_at)
                    )
                applied.append(UsageApplied(o.customer_id, previous, o.health_class, trigger))
        return applied

    def pending_emissions(self, *, limit: int) -> list[PendingEmission]:
        with self.customers.lock:
            return [
                PendingEmission(c.id, c.customer_id, c.trigger, c.changed_at)
                for c in self._changes
                if c.trigger is not None and c.decision_id is None
            ][:limit]

    def record_emissions(self, emissions: Sequence[Emission], *, now: datetime) -> None:
        with self.customers.lock:
            queued = {q.contact.decision_id for q in self._outbox}
            for emission in emissions:
                contact = emission.queued
                if contact is not None and contact.decision_id not in queued:
                    self._outbox.append(_Queued(next(self._outbox_ids), contact))
                    queued.add(contact.decision_id)
            made = {e.change_id: e.decision_id for e in emissions}
            for change in self._changes:
                if change.id in made:
                    change.decision_id = made[change.id]

    def lease(
        self, *, channel: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[LeasedContact]:
        with self.customers.lock:
            due = [
                q
                for q in self._outbox
                if q.contact.channel == channel
                and (
                    q.status == "pending"
                    or (
                        q.status == "leased" and q.leased_until is not None and q.leased_until < now
                    )
                )
            ][:limit]
            for q in due:
                q.status = "leased"
                q.leased_until = lease_until
            return [
                LeasedContact(
                    outbox_id=q.id,
                    decision_id=q.contact.decision_id,
                    customer_id=q.contact.customer_id,
                    channel=q.contact.channel,
                    send_at=q.contact.send_at,
                    answer=q.contact.answer,
                )
                for q in due
            ]

    def ack(self, *, ids: Sequence[int], now: datetime) -> list[AckedContact]:
        wanted = set(ids)
        with self.customers.lock:
            found = [q for q in self._outbox if q.id in wanted]
            for q in found:
                if q.status != "acked":
                    q.status = "acked"
                    q.acked_at = now
            return [AckedContact(q.id, q.contact.decision_id) for q in found]

    def _forget(self, customer_id: str) -> None:
        self._changes = [c for c in self._changes if c.customer_id != customer_id]
        self._outbox = [q for q in self._outbox if q.contact.customer_id != customer_id]
