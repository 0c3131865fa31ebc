"""Feedback: what channel systems report about decisions, and what converted.

Delivery events mark a contact sent (or failed); unsubscribes and complaints are guardrail
signals and revoke that channel's consent. Conversions are attributed to the customer's decision
whose attribution window holds them, last touch first; a conversion in a window that has already
closed is kept and counted as late. Everything is idempotent: a repeated event key or conversion
id changes nothing and gets the first answer, also when the repeats arrive concurrently; a key
reused for another event or conversion is a conflict.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Engine
from sqlmodel import Session

from campaign_db import queries
from campaign_db.customers import set_consent
from campaign_db.engine import session_scope
from campaign_db.models import AuditLog
from campaign_db.privacy import erased_alias
from optimizer.core.privacy import pseudonym
from optimizer.core.values import DecisionReason, JsonFloat, NulFreeStr, Timestamp, new_id, utcnow
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError

EventKind = Literal[
    "sent", "delivered", "opened", "clicked", "bounced", "failed", "unsubscribed", "complained"
]
SENT_KINDS = {"sent", "delivered", "opened", "clicked"}
FAILED_KINDS = {"bounced", "failed"}
REVOKING_KINDS = {"unsubscribed", "complained"}
Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")]


class DeliveryEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: EventKind
    occurred_at: Timestamp | None = None
    event_id: Key | None = Field(default=None, description="idempotency key of the event")


class DeliveryEventResult(BaseModel):
    decision_id: uuid.UUID
    kind: EventKind
    duplicate: bool


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversion_id: Key = Field(description="idempotency key")
    customer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
    type: Annotated[NulFreeStr, StringConstraints(min_length=1, max_length=64)]
    value: JsonFloat = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    occurred_at: Timestamp


ConversionStatus = Literal["attributed", "late", "unattributed"]


class ConversionResult(BaseModel):
    conversion_id: str
    status: ConversionStatus
    decision_id: uuid.UUID | None
    duplicate: bool


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: JsonFloat = Field(allow_inf_nan=False)


class RewardResult(BaseModel):
    decision_id: uuid.UUID
    value: float
    status: str


def record_event(
    engine: Engine, *, decision_id: uuid.UUID, event: DeliveryEventIn, now: datetime | None = None
) -> DeliveryEventResult:
    (result,) = record_events(engine, events=[(decision_id, event)], now=now)
    return result


def record_events(
    engine: Engine,
    *,
    events: list[tuple[uuid.UUID, DeliveryEventIn]],
    now: datetime | None = None,
) -> list[DeliveryEventResult]:
    """Record several events in one transaction (all or none).

    An `event_id` already used for another decision or kind is a conflict and nothing is
    recorded, except that unsubscribes and complaints in the batch still revoke consent: the
    customer's wish does not depend on the caller's bookkeeping of ids.
    """
    now = now or utcnow()
    try:
        with session_scope(engine, write=True) as session:
            return [
                _record_event(session, decision_id, event, now) for decision_id, event in events
            ]
    except EventKeyConflictError:
        revoking = [(d, e) for d, e in events if e.kind in REVOKING_KINDS]
        if revoking:
            with session_scope(engine, write=True) as session:
                for decision_id, event in revoking:
                    decision = queries.decision_outcome(session, decision_id=decision_id)
                    if decision is not None:
                        _revoke_consent(session, decision, event, now)
        raise


class EventKeyConflictError(ConflictError):
    """An `event_id` that was already used for another decision or another kind of event."""


def _record_event(
    session: Session, decision_id: uuid.UUID, event: DeliveryEventIn, now: datetime
) -> DeliveryEventResult:
    decision = queries.decision_outcome(session, decision_id=decision_id)
    if decision is None:
        raise NotFoundError("decision_id", f"no decision {decision_id}")
    if decision.reason != DecisionReason.policy or decision.reward_status is None:
        raise InvalidInputError("decision_id", "this decision made no contact to report on")
    stored = queries.insert_delivery_event(
        session,
        event={
            "id": new_id(),
            "decision_id": decision_id,
            "kind": event.kind,
            "occurred_at": event.occurred_at or now,
            "received_at": now,
            "event_key": event.event_id,
        },
    )
    if stored is not None:
        _check_same_event(stored, decision_id, event)
        return DeliveryEventResult(decision_id=decision_id, kind=event.kind, duplicate=True)
    if event.kind in SENT_KINDS:
        queries.update_reward_flags(session, decision_id=decision_id, sent=True)
        status = "sent" if event.kind == "sent" else "delivered"
        queries.mark_contact_sent(session, decision_id=decision_id, status=status)
    elif event.kind in FAILED_KINDS:
        queries.update_reward_flags(session, decision_id=decision_id, failed=True)
        queries.mark_contact_failed(session, decision_id=decision_id)
    else:
        flags = {
            "unsubscribed": event.kind == "unsubscribed",
            "complained": event.kind == "complained",
        }
        queries.update_reward_flags(session, decision_id=decision_id, **flags)
        _revoke_consent(session, decision, event, now)
    return DeliveryEventResult(decision_id=decision_id, kind=event.kind, duplicate=False)


def _check_same_event(
    stored: queries.StoredEvent, decision_id: uuid.UUID, event: DeliveryEventIn
) -> None:
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


def _revoke_consent(
    session: Session, decision: queries.DecisionOutcome, event: DeliveryEventIn, now: datetime
) -> None:
    channel = decision.channel
    if not channel:
        return
    set_consent(
        session,
        customer_id=decision.customer_id,
        channel_key=channel,
        granted=False,
        source=event.kind,
        at=event.occurred_at or now,
    )
    session.add(
        AuditLog(
            at=now,
            actor="channel system",
            action="consent.revoke",
            subject=f"{decision.customer_id}/{channel}",
            details={"reason": event.kind, "decision_id": str(decision.decision_id)},
        )
    )


def record_conversion(
    engine: Engine,
    *,
    conversion: ConversionIn,
    now: datetime | None = None,
    pseudonym_salt: str | None = None,
) -> ConversionResult:
    (result,) = record_conversions(
        engine, conversions=[conversion], now=now, pseudonym_salt=pseudonym_salt
    )
    return result


def record_conversions(
    engine: Engine,
    *,
    conversions: list[ConversionIn],
    now: datetime | None = None,
    pseudonym_salt: str | None = None,
) -> list[ConversionResult]:
    """Record several conversions in one transaction (all or none), in the given order. With
    the salt, a conversion of an erased customer is kept under the pseudonym, never the id."""
    now = now or utcnow()
    with session_scope(engine, write=True) as session:
        return [
            _record_conversion(session, conversion, now, pseudonym_salt)
            for conversion in conversions
        ]


def _record_conversion(
    session: Session, conversion: ConversionIn, now: datetime, salt: str | None
) -> ConversionResult:
    stored = queries.stored_conversion(session, conversion_id=conversion.conversion_id)
    if stored is not None:
        return _repeated_conversion(stored, conversion, salt)
    customer_id = conversion.customer_id
    decision_id = queries.last_touch(
        session, customer_id=customer_id, occurred_at=conversion.occurred_at
    )
    if decision_id is None and salt is not None:
        alias = erased_alias(session, customer_id=customer_id, salt=salt)
        if alias is not None:
            customer_id = alias
            decision_id = queries.last_touch(
                session, customer_id=alias, occurred_at=conversion.occurred_at
            )
    status: ConversionStatus = "unattributed" if decision_id is None else "attributed"
    # The row goes in before the reward is touched: a concurrent duplicate waits here for this
    # transaction and then finds the row, and never counts the conversion twice.
    stored = queries.insert_conversion(
        session,
        conversion={
            "conversion_id": conversion.conversion_id,
            "customer_id": customer_id,
            "kind": conversion.type,
            "value": conversion.value,
            "occurred_at": conversion.occurred_at,
            "received_at": now,
            "decision_id": decision_id,
            "status": status,
        },
    )
    if stored is not None:
        return _repeated_conversion(stored, conversion, salt)
    if decision_id is not None and not queries.add_conversion_to_reward(
        session, decision_id=decision_id, value=conversion.value
    ):
        queries.count_late_conversion(session, decision_id=decision_id)
        queries.mark_conversion_late(session, conversion_id=conversion.conversion_id)
        status = "late"
    return ConversionResult(
        conversion_id=conversion.conversion_id,
        status=status,
        decision_id=decision_id,
        duplicate=False,
    )


def _repeated_conversion(
    stored: queries.StoredConversion, conversion: ConversionIn, salt: str | None
) -> ConversionResult:
    """The first answer again for a repeat; a conflict when the id names another conversion.
    A repeat after the customer's erasure matches the row stored under the pseudonym."""
    customers = {conversion.customer_id}
    if salt is not None:
        customers.add(pseudonym(conversion.customer_id, salt))
    differs = [
        name
        for name, same in (
            ("customer_id", stored.customer_id in customers),
            ("type", stored.kind == conversion.type),
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
    return ConversionResult(
        conversion_id=conversion.conversion_id,
        status=stored.status,
        decision_id=stored.decision_id,
        duplicate=True,
    )


def record_reward(engine: Engine, *, decision_id: uuid.UUID, reward: RewardIn) -> RewardResult:
    """A reward set directly by a caller that knows the decision; it replaces attribution."""
    with session_scope(engine, write=True) as session:
        decision = queries.decision_outcome(session, decision_id=decision_id)
        if decision is None:
            raise NotFoundError("decision_id", f"no decision {decision_id}")
        outcome = queries.reward_of(session, decision_id=decision_id)
        if outcome is None or decision.frame_key is None or decision.frame_version is None:
            raise InvalidInputError("decision_id", "this decision has no reward to set")
        frame = queries.frame_versions(session, keys={decision.frame_key}).get(
            (decision.frame_key, decision.frame_version)
        )
        low, high = (frame.reward_range if frame is not None else [0.0, 1.0])[:2]
        if not (low <= reward.value <= high) or math.isnan(reward.value):
            raise InvalidInputError(
                "value", f"reward {reward.value:g} outside the frame's range [{low:g}, {high:g}]"
            )
        if outcome.status != "pending":
            raise ConflictError("decision_id", f"the reward is already {outcome.status}")
        outcome.direct_value = reward.value
        session.add(outcome)
        return RewardResult(decision_id=decision_id, value=reward.value, status=outcome.status)
