"""Delivery events, conversions and direct rewards behind the optimizer's `FeedbackStore`."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, bindparam, func, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from campaign_db.audit import add_audit
from campaign_db.budgets import release_budget_spend
from campaign_db.customers import set_consent
from campaign_db.engine import session_scope
from campaign_db.models import (
    ContactHistory,
    Conversion,
    DecisionFrame,
    DecisionLog,
    DeliveryEvent,
    Reward,
    chunks,
    table_of,
)
from campaign_db.privacy import erased_alias
from campaign_db.rewards import reward_terms
from optimizer.core.privacy import pseudonym
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

_logs = table_of(DecisionLog)
_rewards = table_of(Reward)
_contacts = table_of(ContactHistory)
_events = table_of(DeliveryEvent)
_conversions = table_of(Conversion)
_touch_start = func.coalesce(_logs.c.send_at, _logs.c.created_at)

# Feedback arrives at several events per contact; its statements are built once, here.
_DECISION_OUTCOMES = (
    _logs.select()
    .with_only_columns(
        _logs.c.id,
        _logs.c.customer_id,
        _logs.c.reason,
        _logs.c.frame_key,
        _logs.c.frame_version,
        _rewards.c.status,
        _contacts.c.channel_key,
    )
    .select_from(
        _logs.outerjoin(_rewards, _rewards.c.decision_id == _logs.c.id).outerjoin(
            _contacts, _contacts.c.decision_id == _logs.c.id
        )
    )
    .where(_logs.c.id.in_(bindparam("ids", expanding=True)))
)
_STORED_EVENTS = (
    _events.select()
    .with_only_columns(
        _events.c.event_key,
        _events.c.decision_id,
        _events.c.kind,
        _events.c.occurred_at,
        _events.c.received_at,
    )
    .where(_events.c.event_key.in_(bindparam("keys", expanding=True)))
)
_INSERT_EVENT = _events.insert()
_SET_FLAG = {
    flag: update(_rewards)
    .where(_rewards.c.decision_id == bindparam("reward_of"))
    .values({flag: true()})
    for flag in ("sent", "failed", "unsubscribed", "complained")
}
_CONTACT_SENT = (
    update(_contacts)
    .where(
        _contacts.c.decision_id == bindparam("contact_of"),
        (_contacts.c.status == "reserved") | (_contacts.c.status == "sent"),
    )
    .values(status=bindparam("new_status"))
)
_CONTACT_FAILED = (
    update(_contacts)
    .where(_contacts.c.decision_id == bindparam("contact_of"), _contacts.c.status != "failed")
    .values(status="failed")
)
_STORED_CONVERSIONS = (
    _conversions.select()
    .with_only_columns(
        _conversions.c.conversion_id,
        _conversions.c.status,
        _conversions.c.decision_id,
        _conversions.c.customer_id,
        _conversions.c.kind,
        _conversions.c.value,
        _conversions.c.occurred_at,
    )
    .where(_conversions.c.conversion_id.in_(bindparam("ids", expanding=True)))
)
_CONVERSION_LATE = (
    update(_conversions)
    .where(_conversions.c.conversion_id == bindparam("late_id"))
    .values(status="late")
)
_LAST_TOUCH = (
    _logs.select()
    .with_only_columns(_rewards.c.decision_id)
    .select_from(_logs.join(_rewards, _rewards.c.decision_id == _logs.c.id))
    .where(
        _logs.c.customer_id == bindparam("customer_id"),
        _rewards.c.window_closes_at >= bindparam("occurred_at"),
        _touch_start <= bindparam("occurred_at"),
    )
    .order_by(_touch_start.desc())
    .limit(1)
)
_ADD_CONVERSION = (
    update(_rewards)
    .where(_rewards.c.decision_id == bindparam("reward_of"), _rewards.c.status == "pending")
    .values(
        conversions=_rewards.c.conversions + 1,
        conversion_value=_rewards.c.conversion_value + bindparam("added_value"),
    )
)
_COUNT_LATE = (
    update(_rewards)
    .where(_rewards.c.decision_id == bindparam("reward_of"))
    .values(late_conversions=_rewards.c.late_conversions + 1)
)
_SET_DIRECT = (
    update(_rewards)
    .where(_rewards.c.decision_id == bindparam("reward_of"), _rewards.c.status == "pending")
    .values(direct_value=bindparam("direct"))
)


def decision_outcomes(
    session: Session, *, decision_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, DecisionOutcome]:
    found: dict[uuid.UUID, DecisionOutcome] = {}
    for ids in chunks(decision_ids):
        for row in session.connection().execute(_DECISION_OUTCOMES, {"ids": ids}):
            found.setdefault(row[0], DecisionOutcome(*row))
    return found


def insert_unless_taken(session: Session, table: Table, key: str, row: dict[str, Any]) -> bool:
    """Insert `row` unless its unique `key` is taken; False if it was.

    `ON CONFLICT DO NOTHING` rather than read-then-insert: on PostgreSQL a concurrent insert of
    the same key waits for the other transaction to end and then does nothing, instead of
    failing with a unique violation. (SQLite serialises writers; the statement is the same.)
    """
    statement = _insert_unless_taken_statement(session.get_bind().dialect.name, table, key)
    return session.connection().execute(statement, row).first() is not None


@functools.cache
def _insert_unless_taken_statement(dialect: str, table: Table, key: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports -1 for this statement
    return (
        insert(table).on_conflict_do_nothing(index_elements=[table.c[key]]).returning(table.c[key])
    )


def stored_events(session: Session, *, event_keys: Collection[str]) -> dict[str, StoredEvent]:
    found: dict[str, StoredEvent] = {}
    for keys in chunks(event_keys):
        for row in session.connection().execute(_STORED_EVENTS, {"keys": keys}):
            found[row[0]] = StoredEvent(row[1], row[2], row[3], row[4])
    return found


def insert_delivery_event(session: Session, *, write: EventWrite) -> None:
    """Store an event and apply what it changes; `KeyTakenError` if its key is taken."""
    row = {
        "id": write.id,
        "decision_id": write.decision_id,
        "kind": write.kind,
        "occurred_at": write.occurred_at,
        "received_at": write.received_at,
        "event_key": write.event_key,
    }
    connection = session.connection()
    if write.event_key is None:
        connection.execute(_INSERT_EVENT, row)
    elif not insert_unless_taken(session, _events, "event_key", row):
        raise KeyTakenError(write.event_key)
    for flag in sorted(write.flags):
        connection.execute(_SET_FLAG[flag], {"reward_of": write.decision_id})
    if write.contact_status == "failed":
        mark_contact_failed(session, decision_id=write.decision_id)
    elif write.contact_status is not None:
        mark_contact_sent(session, decision_id=write.decision_id, status=write.contact_status)
    if write.revocation is not None:
        revoke_consent(session, revocation=write.revocation)


def mark_contact_sent(session: Session, *, decision_id: uuid.UUID, status: str) -> None:
    """`sent` or `delivered`; a failed contact stays failed."""
    session.connection().execute(_CONTACT_SENT, {"contact_of": decision_id, "new_status": status})


def mark_contact_failed(session: Session, *, decision_id: uuid.UUID) -> None:
    """A bounced or failed contact no longer counts against the contact policy, nor against
    the frame's budgets."""
    failed = session.connection().execute(_CONTACT_FAILED, {"contact_of": decision_id})
    if failed.rowcount:
        release_budget_spend(session, decision_id=decision_id)


def revoke_consent(session: Session, *, revocation: ConsentRevocation) -> None:
    set_consent(
        session,
        customer_id=revocation.customer_id,
        channel_key=revocation.channel,
        granted=False,
        source=revocation.source,
        at=revocation.at,
    )
    add_audit(session, revocation.audit)


def stored_conversions(
    session: Session, *, conversion_ids: Collection[str]
) -> dict[str, StoredConversion]:
    found: dict[str, StoredConversion] = {}
    for ids in chunks(conversion_ids):
        for row in session.connection().execute(_STORED_CONVERSIONS, {"ids": ids}):
            found[row[0]] = StoredConversion(*row[1:])
    return found


def insert_conversion(session: Session, *, write: ConversionWrite) -> ConversionStatus:
    """Store a conversion and count it on its decision's reward; `KeyTakenError` if its id is
    taken. The row goes in before the reward is touched: a concurrent duplicate waits for this
    transaction and then finds the row, and never counts the conversion twice."""
    status: ConversionStatus = "unattributed" if write.decision_id is None else "attributed"
    row = {
        "conversion_id": write.conversion_id,
        "customer_id": write.customer_id,
        "kind": write.kind,
        "value": write.value,
        "occurred_at": write.occurred_at,
        "received_at": write.received_at,
        "decision_id": write.decision_id,
        "status": status,
    }
    if not insert_unless_taken(session, _conversions, "conversion_id", row):
        raise KeyTakenError(write.conversion_id)
    if write.decision_id is None or add_conversion_to_reward(
        session, decision_id=write.decision_id, value=write.value
    ):
        return status
    count_late_conversion(session, decision_id=write.decision_id)
    mark_conversion_late(session, conversion_id=write.conversion_id)
    return "late"


def mark_conversion_late(session: Session, *, conversion_id: str) -> None:
    """A conversion whose decision's reward was already final when it arrived."""
    session.connection().execute(_CONVERSION_LATE, {"late_id": conversion_id})


def last_touch(session: Session, *, customer_id: str, occurred_at: datetime) -> uuid.UUID | None:
    row = (
        session.connection()
        .execute(_LAST_TOUCH, {"customer_id": customer_id, "occurred_at": occurred_at})
        .first()
    )
    return None if row is None else row[0]


def add_conversion_to_reward(session: Session, *, decision_id: uuid.UUID, value: float) -> bool:
    """Count a conversion on a pending reward; False when the reward is already final."""
    result = session.connection().execute(
        _ADD_CONVERSION, {"reward_of": decision_id, "added_value": value}
    )
    return bool(result.rowcount)


def count_late_conversion(session: Session, *, decision_id: uuid.UUID) -> None:
    session.connection().execute(_COUNT_LATE, {"reward_of": decision_id})


class SqlFeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def decision_outcomes(
        self, decision_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, DecisionOutcome]:
        with session_scope(self.engine) as session:
            return decision_outcomes(session, decision_ids=decision_ids)

    def stored_events(self, event_keys: Collection[str]) -> dict[str, StoredEvent]:
        if not event_keys:
            return {}
        with session_scope(self.engine) as session:
            return stored_events(session, event_keys=event_keys)

    def record_events(self, writes: Sequence[EventWrite]) -> None:
        if not writes:
            return
        with session_scope(self.engine, write=True) as session:
            for write in writes:
                insert_delivery_event(session, write=write)

    def revoke_consents(self, revocations: Sequence[ConsentRevocation]) -> None:
        if not revocations:
            return
        with session_scope(self.engine, write=True) as session:
            for revocation in revocations:
                revoke_consent(session, revocation=revocation)

    def stored_conversions(self, conversion_ids: Collection[str]) -> dict[str, StoredConversion]:
        with session_scope(self.engine) as session:
            return stored_conversions(session, conversion_ids=conversion_ids)

    def last_touch(self, *, customer_id: str, occurred_at: datetime) -> uuid.UUID | None:
        with session_scope(self.engine) as session:
            return last_touch(session, customer_id=customer_id, occurred_at=occurred_at)

    def erased_alias(self, *, customer_id: str, salt: str) -> str | None:
        with session_scope(self.engine) as session:
            return erased_alias(session, customer_id=customer_id, salt=salt)

    def pseudonym(self, customer_id: str, salt: str) -> str:
        return pseudonym(customer_id, salt)

    def record_conversions(self, writes: Sequence[ConversionWrite]) -> list[ConversionStatus]:
        if not writes:
            return []
        with session_scope(self.engine, write=True) as session:
            return [insert_conversion(session, write=write) for write in writes]

    def reward_terms(self, *, frame_key: str, frame_version: int) -> RewardTerms | None:
        with session_scope(self.engine) as session:
            frame = session.exec(
                select(DecisionFrame).where(
                    DecisionFrame.key == frame_key, DecisionFrame.version == frame_version
                )
            ).first()
        if frame is None:
            return None
        return reward_terms(frame.reward_definition, frame.reward_range, frame.reward_harm)

    def set_direct_reward(self, *, decision_id: uuid.UUID, value: float) -> bool:
        with session_scope(self.engine, write=True) as session:
            result = session.connection().execute(
                _SET_DIRECT, {"reward_of": decision_id, "direct": value}
            )
            return bool(result.rowcount)
