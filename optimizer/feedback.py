"""Feedback: what channel systems report about decisions, and what converted.

Delivery events mark a contact sent (or failed); unsubscribes and complaints are guardrail
signals and revoke that channel's consent. Conversions are attributed to the customer's decision
whose attribution window holds them, last touch first; a conversion in a window that has already
closed is kept and counted as late. Everything is idempotent: a repeated event key or conversion
id changes nothing and gets the first answer, also when the repeats arrive concurrently; a key
reused for another event or conversion is a conflict.

Each batch is read, planned here and written by the store in one transaction (all or none); when
a concurrent request takes a key in between, the batch is read and planned again.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from optimizer.core.values import DecisionReason, new_id, utcnow
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.ports.audit import AuditEntry
from optimizer.ports.feedback import (
    ConsentRevocation,
    ContactStatusChange,
    ConversionStatus,
    ConversionWrite,
    DecisionOutcome,
    EventWrite,
    FeedbackStore,
    KeyTakenError,
    RewardFlag,
    StoredConversion,
    StoredEvent,
)

EventKind = Literal[
    "sent", "delivered", "opened", "clicked", "bounced", "failed", "unsubscribed", "complained"
]
SENT_KINDS = {"sent", "delivered", "opened", "clicked"}
FAILED_KINDS = {"bounced", "failed"}
REVOKING_KINDS = {"unsubscribed", "complained"}


@dataclass(frozen=True)
class EventReport:
    """A delivery event as a channel system reports it; `event_id` is its idempotency key."""

    kind: EventKind
    occurred_at: datetime | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class EventRecorded:
    decision_id: uuid.UUID
    kind: EventKind
    duplicate: bool


@dataclass(frozen=True)
class ConversionReport:
    """A conversion as a conversion source reports it; `conversion_id` is its idempotency key."""

    conversion_id: str
    customer_id: str
    kind: str
    occurred_at: datetime
    value: float = 0.0


@dataclass(frozen=True)
class ConversionRecorded:
    conversion_id: str
    status: ConversionStatus
    decision_id: uuid.UUID | None
    duplicate: bool


@dataclass(frozen=True)
class RewardSet:
    decision_id: uuid.UUID
    value: float
    status: str


class EventKeyConflictError(ConflictError):
    """An `event_id` that was already used for another decision or another kind of event."""


def record_event(
    store: FeedbackStore,
    *,
    decision_id: uuid.UUID,
    event: EventReport,
    now: datetime | None = None,
) -> EventRecorded:
    (result,) = record_events(store, events=[(decision_id, event)], now=now)
    return result


def record_events(
    store: FeedbackStore,
    *,
    events: Sequence[tuple[uuid.UUID, EventReport]],
    now: datetime | None = None,
) -> list[EventRecorded]:
    """Record several events in one transaction (all or none).

    An `event_id` already used for another decision or kind is a conflict and nothing is
    recorded, except that unsubscribes and complaints in the batch still revoke consent: the
    customer's wish does not depend on the caller's bookkeeping of ids.
    """
    now = now or utcnow()
    while True:
        outcomes = store.decision_outcomes({decision_id for decision_id, _ in events})
        stored = store.stored_events({e.event_id for _, e in events if e.event_id is not None})
        try:
            writes, results = _plan_events(events, outcomes, stored, now)
        except EventKeyConflictError:
            store.revoke_consents(
                [
                    revocation
                    for decision_id, event in events
                    if event.kind in REVOKING_KINDS
                    and decision_id in outcomes
                    and (revocation := _revocation(outcomes[decision_id], event, now))
                ]
            )
            raise
        try:
            store.record_events(writes)
        except KeyTakenError:
            continue  # a concurrent request stored that key: read what it stored
        return results


def _plan_events(
    events: Sequence[tuple[uuid.UUID, EventReport]],
    outcomes: Mapping[uuid.UUID, DecisionOutcome],
    stored: Mapping[str, StoredEvent],
    now: datetime,
) -> tuple[list[EventWrite], list[EventRecorded]]:
    writes: list[EventWrite] = []
    results: list[EventRecorded] = []
    planned: dict[str, StoredEvent] = {}
    for decision_id, event in events:
        decision = outcomes.get(decision_id)
        if decision is None:
            raise NotFoundError("decision_id", f"no decision {decision_id}")
        if decision.reason != DecisionReason.policy or decision.reward_status is None:
            raise InvalidInputError("decision_id", "this decision made no contact to report on")
        key = event.event_id
        earlier = None if key is None else planned.get(key) or stored.get(key)
        if earlier is not None:
            _check_same_event(earlier, decision_id, event)
            results.append(EventRecorded(decision_id=decision_id, kind=event.kind, duplicate=True))
            continue
        write = _event_write(decision, event, now)
        if key is not None:
            planned[key] = StoredEvent(decision_id, event.kind, write.occurred_at, now)
        writes.append(write)
        results.append(EventRecorded(decision_id=decision_id, kind=event.kind, duplicate=False))
    return writes, results


def _event_write(decision: DecisionOutcome, event: EventReport, now: datetime) -> EventWrite:
    """What a new event changes: sends mark the contact sent, failures mark it failed (so it no
    longer counts against the contact policy), unsubscribes and complaints revoke consent."""
    flags: frozenset[RewardFlag]
    contact: ContactStatusChange | None = None
    revocation = None
    if event.kind in SENT_KINDS:
        flags, contact = frozenset({"sent"}), "sent" if event.kind == "sent" else "delivered"
    elif event.kind in FAILED_KINDS:
        flags, contact = frozenset({"failed"}), "failed"
    else:
        flags = frozenset({"unsubscribed" if event.kind == "unsubscribed" else "complained"})
        revocation = _revocation(decision, event, now)
    return EventWrite(
        id=new_id(),
        decision_id=decision.decision_id,
        kind=event.kind,
        occurred_at=event.occurred_at or now,
        received_at=now,
        event_key=event.event_id,
        flags=flags,
        contact_status=contact,
        revocation=revocation,
    )


def _check_same_event(stored: StoredEvent, decision_id: uuid.UUID, event: EventReport) -> None:
    """A repeat of the same event is a duplicate; another event under its id is a conflict.
    A time is compared only when both requests gave one (a stored time equal to its receipt
    time was filled in by the server)."""
    same_time = (
        event.occurred_at is None
        or stored.occurred_at == stored.received_at
        or stored.occurred_at == event.occurred_at
    )
    if stored.decision_id == decision_id and stored.kind == event.kind and same_time:
        return
    if stored.decision_id == decision_id and stored.kind == event.kind:
        used = f"the same event at {stored.occurred_at.isoformat()}"
    else:
        used = f"the {stored.kind!r} event of decision {stored.decision_id}"
    message = f"{event.event_id!r} was already used for {used}; send this event with a new event_id"
    if event.kind in REVOKING_KINDS:
        message += " (the channel's consent is revoked all the same)"
    raise EventKeyConflictError("event_id", message)


def _revocation(
    decision: DecisionOutcome, event: EventReport, now: datetime
) -> ConsentRevocation | None:
    channel = decision.channel
    if not channel:
        return None
    subject = f"{decision.customer_id}/{channel}"
    return ConsentRevocation(
        customer_id=decision.customer_id,
        channel=channel,
        source=event.kind,
        at=event.occurred_at or now,
        audit=AuditEntry(
            actor="channel system",
            action="consent.revoke",
            subject=subject,
            at=now,
            details={"reason": event.kind, "decision_id": str(decision.decision_id)},
        ),
    )


def record_conversion(
    store: FeedbackStore,
    *,
    conversion: ConversionReport,
    now: datetime | None = None,
    pseudonym_salt: str | None = None,
) -> ConversionRecorded:
    (result,) = record_conversions(
        store, conversions=[conversion], now=now, pseudonym_salt=pseudonym_salt
    )
    return result


def record_conversions(
    store: FeedbackStore,
    *,
    conversions: Sequence[ConversionReport],
    now: datetime | None = None,
    pseudonym_salt: str | None = None,
) -> list[ConversionRecorded]:
    """Record several conversions in one transaction (all or none), in the given order. With
    the salt, a conversion of an erased customer is kept under the pseudonym, never the id."""
    now = now or utcnow()
    while True:
        stored = store.stored_conversions({c.conversion_id for c in conversions})
        plan = _ConversionPlan(store, stored, now, pseudonym_salt)
        for conversion in conversions:
            plan.add(conversion)
        try:
            statuses = store.record_conversions(plan.writes)
        except KeyTakenError:
            continue  # a concurrent request stored that id: read what it stored
        return plan.results(statuses)


class _ConversionPlan:
    """The writes of a batch of conversions, and the answers once the store has applied them
    (a conversion's status is known only then: its reward may have closed meanwhile)."""

    def __init__(
        self,
        store: FeedbackStore,
        stored: Mapping[str, StoredConversion],
        now: datetime,
        salt: str | None,
    ) -> None:
        self.store, self.stored, self.now, self.salt = store, stored, now, salt
        self.writes: list[ConversionWrite] = []
        self._planned: dict[str, tuple[int, StoredConversion]] = {}
        self._answers: list[tuple[ConversionRecorded, int | None]] = []

    def add(self, conversion: ConversionReport) -> None:
        earlier = self._planned.get(conversion.conversion_id)
        if earlier is not None:
            index, planned = earlier
            self._answers.append((self._repeated(planned, conversion), index))
            return
        stored = self.stored.get(conversion.conversion_id)
        if stored is not None:
            self._answers.append((self._repeated(stored, conversion), None))
            return
        customer_id, decision_id = self._attribution(conversion)
        status: ConversionStatus = "unattributed" if decision_id is None else "attributed"
        write = ConversionWrite(
            conversion_id=conversion.conversion_id,
            customer_id=customer_id,
            kind=conversion.kind,
            value=conversion.value,
            occurred_at=conversion.occurred_at,
            received_at=self.now,
            decision_id=decision_id,
        )
        index = len(self.writes)
        self.writes.append(write)
        self._planned[conversion.conversion_id] = (
            index,
            StoredConversion(
                status, decision_id, customer_id, write.kind, write.value, write.occurred_at
            ),
        )
        answer = ConversionRecorded(conversion.conversion_id, status, decision_id, duplicate=False)
        self._answers.append((answer, index))

    def results(self, statuses: Sequence[ConversionStatus]) -> list[ConversionRecorded]:
        return [
            answer if index is None else _with_status(answer, statuses[index])
            for answer, index in self._answers
        ]

    def _attribution(self, conversion: ConversionReport) -> tuple[str, uuid.UUID | None]:
        """Last touch for the customer; for an erased customer, under the pseudonym."""
        customer_id = conversion.customer_id
        decision_id = self.store.last_touch(
            customer_id=customer_id, occurred_at=conversion.occurred_at
        )
        if decision_id is None and self.salt is not None:
            alias = self.store.erased_alias(customer_id=customer_id, salt=self.salt)
            if alias is not None:
                customer_id = alias
                decision_id = self.store.last_touch(
                    customer_id=alias, occurred_at=conversion.occurred_at
                )
        return customer_id, decision_id

    def _repeated(
        self, stored: StoredConversion, conversion: ConversionReport
    ) -> ConversionRecorded:
        """The first answer again for a repeat; a conflict when the id names another
        conversion. A repeat after the customer's erasure matches the row stored under the
        pseudonym."""
        customers = {conversion.customer_id}
        if self.salt is not None:
            customers.add(self.store.pseudonym(conversion.customer_id, self.salt))
        differs = [
            name
            for name, same in (
                ("customer_id", stored.customer_id in customers),
                ("type", stored.kind == conversion.kind),
                ("value", stored.value == conversion.value),
                ("occurred_at", stored.occurred_at == conversion.occurred_at),
            )
            if not same
        ]
        if differs:
            raise ConflictError(
                "conversion_id",
                f"{conversion.conversion_id!r} was already used for a conversion with another "
                f"{', '.join(differs)}; send this conversion with a new conversion_id",
            )
        return ConversionRecorded(
            conversion_id=conversion.conversion_id,
            status=stored.status,
            decision_id=stored.decision_id,
            duplicate=True,
        )


def _with_status(answer: ConversionRecorded, status: ConversionStatus) -> ConversionRecorded:
    return ConversionRecorded(answer.conversion_id, status, answer.decision_id, answer.duplicate)


def record_reward(store: FeedbackStore, *, decision_id: uuid.UUID, value: float) -> RewardSet:
    """A reward set directly by a caller that knows the decision; it replaces attribution."""
    decision = store.decision_outcomes([decision_id]).get(decision_id)
    if decision is None:
        raise NotFoundError("decision_id", f"no decision {decision_id}")
    if (
        decision.reward_status is None
        or decision.frame_key is None
        or decision.frame_version is None
    ):
        raise InvalidInputError("decision_id", "this decision has no reward to set")
    terms = store.reward_terms(frame_key=decision.frame_key, frame_version=decision.frame_version)
    low, high = (terms.reward_range if terms is not None else (0.0, 1.0))[:2]
    if not (low <= value <= high) or math.isnan(value):
        raise InvalidInputError(
            "value", f"reward {value:g} outside the frame's range [{low:g}, {high:g}]"
        )
    status = decision.reward_status
    if status == "pending" and store.set_direct_reward(decision_id=decision_id, value=value):
        return RewardSet(decision_id=decision_id, value=value, status=status)
    if status == "pending":  # closed since it was read
        status = store.decision_outcomes([decision_id])[decision_id].reward_status or "closed"
    raise ConflictError("decision_id", f"the reward is already {status}")
