"""Feedback about decisions: delivery events, conversions and direct rewards, as stored.

The optimizer reads what is stored, decides what a report changes, and hands the store the
writes as values; the store applies each batch in one transaction. Idempotency keys are unique
in the store: a key taken between the read and the write makes the store write nothing and
raise `KeyTakenError`, and the optimizer reads again.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from optimizer.ports.audit import AuditEntry
from optimizer.ports.rewards import RewardTerms

RewardFlag = Literal["sent", "failed", "unsubscribed", "complained"]
ContactStatusChange = Literal["sent", "delivered", "failed"]
ConversionStatus = Literal["attributed", "late", "unattributed"]


class KeyTakenError(Exception):
    """An idempotency key was taken by another transaction after it was read as free."""


@dataclass(frozen=True)
class DecisionOutcome:
    """The few facts feedback needs about a decision, without its whole log record."""

    decision_id: uuid.UUID
    customer_id: str
    reason: str
    frame_key: str | None
    frame_version: int | None
    reward_status: str | None
    """None when the decision has no reward (it made no contact to learn from)."""
    channel: str | None


@dataclass(frozen=True)
class StoredEvent:
    """The event already stored under an event key."""

    decision_id: uuid.UUID
    kind: str
    occurred_at: datetime
    received_at: datetime


@dataclass(frozen=True)
class ConsentRevocation:
    """An unsubscribe or complaint: the channel's consent goes, and the audit log says why."""

    customer_id: str
    channel: str
    source: str
    at: datetime
    audit: AuditEntry


@dataclass(frozen=True)
class EventWrite:
    """A new delivery event and what it changes: reward flags (only ever set), the contact's
    status (a failed contact stays failed unless it fails) and the channel's consent."""

    id: uuid.UUID
    decision_id: uuid.UUID
    kind: str
    occurred_at: datetime
    received_at: datetime
    event_key: str | None
    flags: frozenset[RewardFlag] = frozenset()
    contact_status: ContactStatusChange | None = None
    revocation: ConsentRevocation | None = None


@dataclass(frozen=True)
class StoredConversion:
    """A conversion already recorded under its conversion id."""

    status: ConversionStatus
    decision_id: uuid.UUID | None
    customer_id: str
    kind: str
    value: float
    occurred_at: datetime


@dataclass(frozen=True)
class ConversionWrite:
    """A new conversion; with a decision it counts on that decision's reward."""

    conversion_id: str
    customer_id: str
    kind: str
    value: float
    occurred_at: datetime
    received_at: datetime
    decision_id: uuid.UUID | None


class FeedbackStore(Protocol):
    def decision_outcomes(
        self, decision_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DecisionOutcome]:
        """The decisions that exist among `decision_ids`."""
        ...

    def stored_events(self, event_keys: Collection[str]) -> dict[str, StoredEvent]: ...

    def record_events(self, writes: Sequence[EventWrite]) -> None:
        """All or none; `KeyTakenError` (nothing written) when an event key is taken."""
        ...

    def revoke_consents(self, revocations: Sequence[ConsentRevocation]) -> None:
        """In one transaction, with their audit entries."""
        ...

    def stored_conversions(
        self, conversion_ids: Collection[str]
    ) -> dict[str, StoredConversion]: ...

    def last_touch(self, *, customer_id: str, occurred_at: datetime) -> uuid.UUID | None:
        """The customer's decision whose attribution window holds `occurred_at` and that
        touched last before it (contacts from their send time, other decisions from theirs)."""
        ...

    def erased_alias(self, *, customer_id: str, salt: str) -> str | None:
        """The pseudonym of a customer who was erased and has no profile again; else None."""
        ...

    def pseudonym(self, customer_id: str, salt: str) -> str:
        """The id an erased customer's records carry instead of `customer_id`."""
        ...

    def record_conversions(self, writes: Sequence[ConversionWrite]) -> list[ConversionStatus]:
        """All or none, in order; `KeyTakenError` (nothing written) when a conversion id is
        taken. An attributed conversion counts on its decision's reward while that is pending;
        otherwise it is stored and counted as late. Returns each conversion's stored status."""
        ...

    def reward_terms(self, *, frame_key: str, frame_version: int) -> RewardTerms | None: ...

    def set_direct_reward(self, *, decision_id: uuid.UUID, value: float) -> bool:
        """Set the value that replaces attribution; False when the reward is no longer pending."""
        ...
