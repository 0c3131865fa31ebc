"""Usage observations, health classes, the triggers they emit, and the outbox of decisions that
wait for their channel system."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from optimizer.ports.audit import JsonValue

TriggerTable = Mapping[tuple[str, str], str]
"""The trigger a change of health class emits, per (previous class, new class)."""


@dataclass(frozen=True)
class UsageObservation:
    customer_id: str
    usage_index: float
    health_class: str
    recency_days: float
    sessions_30d: float
    minutes_30d: float
    observed_at: datetime


@dataclass(frozen=True)
class UsageApplied:
    """What an observation did: the class it replaced and the trigger the change emitted."""

    customer_id: str
    previous_class: str
    health_class: str
    trigger: str | None


@dataclass(frozen=True)
class PendingEmission:
    """A class change whose trigger has been emitted but whose decision is not made yet."""

    change_id: int
    customer_id: str
    trigger: str
    changed_at: datetime


@dataclass(frozen=True)
class QueuedContact:
    decision_id: uuid.UUID
    customer_id: str
    channel: str
    send_at: datetime
    answer: Mapping[str, JsonValue]
    """The decision as answered; the SQL store reads it from the decision log instead."""


@dataclass(frozen=True)
class Emission:
    """The decision made for a class change, and the contact to queue if it is one."""

    change_id: int
    decision_id: uuid.UUID
    queued: QueuedContact | None


@dataclass(frozen=True)
class LeasedContact:
    outbox_id: int
    decision_id: uuid.UUID
    customer_id: str
    channel: str
    send_at: datetime
    answer: Mapping[str, JsonValue]


@dataclass(frozen=True)
class AckedContact:
    outbox_id: int
    decision_id: uuid.UUID


class OutboxStore(Protocol):
    def apply_usage(
        self, observations: Sequence[UsageObservation], *, triggers: TriggerTable
    ) -> list[UsageApplied]:
        """Store the observations in order, with a class-change row for each change of class
        carrying its trigger, in one transaction. Raises `UnknownCustomerError` for an unknown
        customer, and then writes nothing."""
        ...

    def pending_emissions(self, *, limit: int) -> list[PendingEmission]:
        """Oldest first."""
        ...

    def record_emissions(self, emissions: Sequence[Emission], *, now: datetime) -> None:
        """Queue the contacts (once per decision) and mark the changes emitted, atomically."""
        ...

    def lease(
        self, *, channel: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[LeasedContact]:
        """Pending contacts of a channel and those whose lease ran out, oldest first, leased
        until `lease_until`."""
        ...

    def ack(self, *, ids: Sequence[int], now: datetime) -> list[AckedContact]:
        """Acknowledge the known ids (again, for ones acknowledged before)."""
        ...
