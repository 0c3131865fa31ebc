"""Feedback in memory: decisions are seeded by the test, feedback is recorded as in SQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from optimizer.core.privacy import pseudonym
from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.feedback import (
    ConsentRevocation,
    ConversionStatus,
    ConversionWrite,
    DecisionOutcome,
    EventWrite,
    KeyTakenError,
    StoredConversion,
    StoredEvent,
)
from optimizer.ports.rewards import RewardTerms


@dataclass
class MemoryReward:
    """A reward as the `reward` table holds it."""

    window_closes_at: datetime
    status: str = "pending"
    value: float | None = None
    conversions: int = 0
    conversion_value: float = 0.0
    late_conversions: int = 0
    direct_value: float | None = None
    sent: bool = False
    failed: bool = False
    unsubscribed: bool = False
    complained: bool = False
    finalized_at: datetime | None = None
    sequence: int | None = None


@dataclass
class MemoryDecision:
    outcome: DecisionOutcome
    touched_at: datetime
    """When the decision touched the customer: its send time, else its time."""
    offer_cost: float = 0.0
    reward: MemoryReward | None = None
    contact_status: str | None = None


@dataclass
class FeedbackLedger:
    """Everything feedback and rewards read and write; one lock makes each call atomic."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    decisions: dict[uuid.UUID, MemoryDecision] = field(default_factory=dict)
    events: dict[uuid.UUID, EventWrite] = field(default_factory=dict)
    conversions: dict[str, StoredConversion] = field(default_factory=dict)
    consents: dict[tuple[str, str], tuple[bool, str, datetime]] = field(default_factory=dict)
    frames: dict[tuple[str, int], RewardTerms] = field(default_factory=dict)
    profiles: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)

    def erase(self, customer_id: str, alias: str) -> None:
        self.profiles.discard(customer_id)
        self.erased.add(alias)
        for consent in [k for k in self.consents if k[0] == customer_id]:
            del self.consents[consent]
        for decision in self.decisions.values():
            if decision.outcome.customer_id == customer_id:
                decision.outcome = replace(decision.outcome, customer_id=alias, channel=None)
                decision.contact_status = None
        for conversion_id, conversion in self.conversions.items():
            if conversion.customer_id == customer_id:
                self.conversions[conversion_id] = replace(conversion, customer_id=alias)


class MemoryFeedbackStore:
    def __init__(self, audit: MemoryAuditLog | None = None) -> None:
        self.ledger = FeedbackLedger()
        self.audit = audit or MemoryAuditLog()

    # --- what the decision path and the catalog would have stored -----------------------------

    def add_decision(
        self,
        *,
        decision_id: uuid.UUID,
        customer_id: str,
        touched_at: datetime,
        window_closes_at: datetime | None,
        reason: str = "policy",
        frame: tuple[str, int] | None = None,
        channel: str | None = None,
        offer_cost: float = 0.0,
    ) -> None:
        """A decision; with `window_closes_at` it has a pending reward, with `channel` a
        reserved contact."""
        outcome = DecisionOutcome(
            decision_id=decision_id,
            customer_id=customer_id,
            reason=reason,
            frame_key=None if frame is None else frame[0],
            frame_version=None if frame is None else frame[1],
            reward_status=None if window_closes_at is None else "pending",
            channel=channel,
        )
        reward = None if window_closes_at is None else MemoryReward(window_closes_at)
        with self.ledger.lock:
            self.ledger.profiles.add(customer_id)
            self.ledger.decisions[decision_id] = MemoryDecision(
                outcome, touched_at, offer_cost, reward, None if channel is None else "reserved"
            )

    def add_frame(self, *, key: str, version: int, terms: RewardTerms) -> None:
        with self.ledger.lock:
            self.ledger.frames[(key, version)] = terms

    def erase_customer(self, *, customer_id: str, salt: str) -> None:
        """As the privacy module erases: the profile, consents and contacts go, the decisions
        and conversions keep the pseudonym."""
        with self.ledger.lock:
            self.ledger.erase(customer_id, pseudonym(customer_id, salt))

    # --- what tests read back ------------------------------------------------------------------

    def reward(self, decision_id: uuid.UUID) -> MemoryReward:
        with self.ledger.lock:
            reward = self.ledger.decisions[decision_id].reward
        if reward is None:
            raise LookupError(f"decision {decision_id} has no reward")
        return replace(reward)

    def contact_status(self, decision_id: uuid.UUID) -> str | None:
        with self.ledger.lock:
            return self.ledger.decisions[decision_id].contact_status

    def consent(self, customer_id: str, channel: str) -> bool | None:
        with self.ledger.lock:
            found = self.ledger.consents.get((customer_id, channel))
            return None if found is None else found[0]

    def event_count(self, decision_id: uuid.UUID) -> int:
        with self.ledger.lock:
            return sum(e.decision_id == decision_id for e in self.ledger.events.values())

    # --- the port ------------------------------------------------------------------------------

    def decision_outcomes(
        self, decision_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DecisionOutcome]:
        with self.ledger.lock:
            found = {i: self.ledger.decisions.get(i) for i in decision_ids}
            return {
                i: replace(d.outcome, reward_status=None if d.reward is None else d.reward.status)
                for i, d in found.items()
                if d is not None
            }

    def stored_events(self, event_keys: Collection[str]) -> dict[str, StoredEvent]:
        keys = set(event_keys)
        with self.ledger.lock:
            return {
                e.event_key: StoredEvent(e.decision_id, e.kind, e.occurred_at, e.received_at)
                for e in self.ledger.events.values()
                if e.event_key is not None and e.event_key in keys
            }

    def record_events(self, writes: Sequence[EventWrite]) -> None:
        with self.ledger.lock:
            taken = {e.event_key for e in self.ledger.events.values() if e.event_key is not None}
            for key in [w.event_key for w in writes if w.event_key is not None]:
                if key in taken:
                    raise KeyTakenError(key)
                taken.add(key)
            for write in writes:
                self._apply_event(write)

    def _apply_event(self, write: EventWrite) -> None:
        self.ledger.events[write.id] = write
        decision = self.ledger.decisions.get(write.decision_id)
        if decision is not None and decision.reward is not None:
            for flag in write.flags:
                setattr(decision.reward, flag, True)
        if decision is not None and decision.contact_status is not None:
            if write.contact_status == "failed":
                decision.contact_status = "failed"
            elif write.contact_status is not None and decision.contact_status in (
                "reserved",
                "sent",
            ):
                decision.contact_status = write.contact_status
        if write.revocation is not None:
            self._revoke(write.revocation)

    def _revoke(self, revocation: ConsentRevocation) -> None:
        key = (revocation.customer_id, revocation.channel)
        self.ledger.consents[key] = (False, revocation.source, revocation.at)
        self.audit.add(revocation.audit)

    def revoke_consents(self, revocations: Sequence[ConsentRevocation]) -> None:
        with self.ledger.lock:
            for revocation in revocations:
                self._revoke(revocation)

    def stored_conversions(self, conversion_ids: Collection[str]) -> dict[str, StoredConversion]:
        with self.ledger.lock:
            found = {i: self.ledger.conversions.get(i) for i in conversion_ids}
            return {i: c for i, c in found.items() if c is not None}

    def last_touch(self, *, customer_id: str, occurred_at: datetime) -> uuid.UUID | None:
        with self.ledger.lock:
            touching = [
                d
                for d in self.ledger.decisions.values()
                if d.outcome.customer_id == customer_id
                and d.reward is not None
                and d.reward.window_closes_at >= occurred_at
                and d.touched_at <= occurred_at
            ]
        if not touching:
            return None
        return max(touching, key=lambda d: d.touched_at).outcome.decision_id

    def erased_alias(self, *, customer_id: str, salt: str) -> str | None:
        alias = pseudonym(customer_id, salt)
        with self.ledger.lock:
            erased = customer_id not in self.ledger.profiles and alias in self.ledger.erased
        return alias if erased else None

    def pseudonym(self, customer_id: str, salt: str) -> str:
        return pseudonym(customer_id, salt)

    def record_conversions(self, writes: Sequence[ConversionWrite]) -> list[ConversionStatus]:
        with self.ledger.lock:
            ids = [w.conversion_id for w in writes]
            for i, conversion_id in enumerate(ids):
                if conversion_id in self.ledger.conversions or conversion_id in ids[:i]:
                    raise KeyTakenError(conversion_id)
            return [self._apply_conversion(write) for write in writes]

    def _apply_conversion(self, write: ConversionWrite) -> ConversionStatus:
        status: ConversionStatus = "unattributed" if write.decision_id is None else "attributed"
        decision = self.ledger.decisions.get(write.decision_id) if write.decision_id else None
        reward = None if decision is None else decision.reward
        if reward is not None and reward.status == "pending":
            reward.conversions += 1
            reward.conversion_value += write.value
        elif reward is not None:
            reward.late_conversions += 1
            status = "late"
        elif write.decision_id is not None:
            status = "late"  # as in SQL: no pending reward to count on
        self.ledger.conversions[write.conversion_id] = StoredConversion(
            status, write.decision_id, write.customer_id, write.kind, write.value, write.occurred_at
        )
        return status

    def reward_terms(self, *, frame_key: str, frame_version: int) -> RewardTerms | None:
        with self.ledger.lock:
            return self.ledger.frames.get((frame_key, frame_version))

    def set_direct_reward(self, *, decision_id: uuid.UUID, value: float) -> bool:
        with self.ledger.lock:
            decision = self.ledger.decisions.get(decision_id)
            if decision is None or decision.reward is None or decision.reward.status != "pending":
                return False
            decision.reward.direct_value = value
            return True
