"""Keyword-only queries: the only place outside migrations where SQL is spoken."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Table, bindparam, case, func, or_, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from campaign_db.models import (
    Action,
    ApiKey,
    AuditLog,
    CatalogRevision,
    Channel,
    Consent,
    ContactHistory,
    Conversion,
    Customer,
    CustomerBase,
    DecisionFrame,
    DecisionLog,
    DeliveryEvent,
    FrameState,
    HealthClassChange,
    LearnerCheckpoint,
    Offer,
    Outbox,
    Reward,
    SendTime,
    Text,
    Trigger,
)


@dataclass(frozen=True)
class CatalogOverview:
    block_counts: dict[str, int]
    frames: list[DecisionFrame]
    actions: int


def catalog_overview(session: Session) -> CatalogOverview:
    counts = {
        name: session.exec(select(func.count()).select_from(table)).one()
        for name, table in (
            ("triggers", Trigger),
            ("offers", Offer),
            ("texts", Text),
            ("channels", Channel),
            ("send times", SendTime),
        )
    }
    frames = session.exec(
        select(DecisionFrame).order_by(col(DecisionFrame.key), col(DecisionFrame.version))
    ).all()
    actions = session.exec(select(func.count()).select_from(Action)).one()
    return CatalogOverview(block_counts=counts, frames=list(frames), actions=actions)


# --- customers and consents ------------------------------------------------------------------


def get_customer(session: Session, *, customer_id: str) -> Customer | None:
    return session.get(Customer, customer_id)


def lock_customer(session: Session, *, customer_id: str) -> Customer | None:
    """Read the customer and hold its row lock until the transaction ends.

    On PostgreSQL this is `SELECT … FOR UPDATE`: decisions for one customer serialise, so two
    concurrent requests cannot both see room under a contact cap. SQLite serialises all writers
    already (`BEGIN IMMEDIATE`).
    """
    statement = select(Customer).where(Customer.id == customer_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.exec(statement).first()


def upsert_customer(
    session: Session, *, customer_id: str, data: CustomerBase, now: datetime
) -> tuple[Customer, bool]:
    """Create or replace a customer profile; returns the row and whether it was created."""
    customer = lock_customer(session, customer_id=customer_id)
    created = customer is None
    if customer is None:
        customer = Customer(id=customer_id, created_at=now, updated_at=now, **data.model_dump())
    else:
        for key, value in data.model_dump().items():
            setattr(customer, key, value)
        customer.updated_at = now
    session.add(customer)
    session.flush()
    return customer, created


def consents_of(session: Session, *, customer_id: str) -> list[Consent]:
    return list(session.exec(select(Consent).where(Consent.customer_id == customer_id)).all())


def set_consent(
    session: Session,
    *,
    customer_id: str,
    channel_key: str,
    granted: bool,
    source: str,
    at: datetime,
) -> Consent:
    consent = session.get(Consent, (customer_id, channel_key))
    if consent is None:
        consent = Consent(customer_id=customer_id, channel_key=channel_key, granted=granted)
    consent.granted = granted
    consent.source = source
    consent.changed_at = at
    session.add(consent)
    session.flush()
    return consent


# --- contact history ------------------------------------------------------------------------

COUNTED_CONTACT_STATUSES = ("reserved", "sent", "delivered")
"""Contacts that count against the contact policy: all but failed and cancelled ones."""


def table_of(model: type[SQLModel]) -> Table:
    table = getattr(model, "__table__")  # noqa: B009 (SQLModel does not type __table__)
    assert isinstance(table, Table)
    return table


_customer = table_of(Customer)
_consent = table_of(Consent)


def catalog_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever a catalog load or a frame status change could change decisions."""
    revision = session.exec(select(func.max(CatalogRevision.id))).one()
    frames = session.exec(
        select(DecisionFrame.id, DecisionFrame.status).order_by(col(DecisionFrame.id))
    ).all()
    states = session.exec(
        select(FrameState.frame_key, FrameState.mode).order_by(col(FrameState.frame_key))
    ).all()
    return (revision, tuple(frames), tuple(states))


def add_customers(
    session: Session,
    *,
    customers: list[dict[str, Any]],
    consents: list[tuple[str, str]],
    now: datetime,
) -> None:
    """Insert many customers and granted consents at once (imports, simulations, benchmarks),
    then refresh the planner's statistics on PostgreSQL."""
    if customers:
        rows = [{"created_at": now, "updated_at": now, "attributes": None, **c} for c in customers]
        session.connection().execute(_customer.insert(), rows)
    if consents:
        session.connection().execute(
            _consent.insert(),
            [
                {
                    "customer_id": c,
                    "channel_key": ch,
                    "granted": True,
                    "changed_at": now,
                    "source": "import",
                }
                for c, ch in consents
            ],
        )
    if session.get_bind().dialect.name == "postgresql":
        # Until autovacuum reaches freshly filled tables the planner thinks them tiny and scans
        # them whole: a decision batch's consent lookup over 160,000 rows took 33 ms, not µs.
        # Every table, not just these two: with the customers analysed but the still-empty log
        # tables not, the learner's queries slowed until it fell minutes behind. SQLite's
        # planner favours indexes without statistics.
        session.connection().execute(text("ANALYZE"))


# --- feedback: delivery events, conversions, rewards -----------------------------------------


@dataclass(frozen=True)
class DecisionOutcome:
    """The few facts feedback needs about a decision, without loading its whole log row."""

    decision_id: uuid.UUID
    customer_id: str
    reason: str
    frame_key: str | None
    frame_version: int | None
    reward_status: str | None
    channel: str | None


_logs = table_of(DecisionLog)
_rewards = table_of(Reward)
_contacts = table_of(ContactHistory)
_events = table_of(DeliveryEvent)
_conversions = table_of(Conversion)
_touch_start = func.coalesce(_logs.c.send_at, _logs.c.created_at)

# Feedback arrives at several events per contact; its statements are built once, here.
_DECISION_OUTCOME = (
    _logs.select()
    .with_only_columns(
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
    .where(_logs.c.id == bindparam("decision_id"))
)
_STORED_EVENT = (
    _events.select()
    .with_only_columns(
        _events.c.decision_id, _events.c.kind, _events.c.occurred_at, _events.c.received_at
    )
    .where(_events.c.event_key == bindparam("key"))
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
_STORED_CONVERSION = (
    _conversions.select()
    .with_only_columns(
        _conversions.c.status,
        _conversions.c.decision_id,
        _conversions.c.customer_id,
        _conversions.c.kind,
        _conversions.c.value,
        _conversions.c.occurred_at,
    )
    .where(_conversions.c.conversion_id == bindparam("conversion_id"))
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


def decision_outcome(session: Session, *, decision_id: uuid.UUID) -> DecisionOutcome | None:
    row = session.connection().execute(_DECISION_OUTCOME, {"decision_id": decision_id}).first()
    if row is None:
        return None
    return DecisionOutcome(decision_id, row[0], row[1], row[2], row[3], row[4], row[5])


def reward_of(session: Session, *, decision_id: uuid.UUID) -> Reward | None:
    return session.get(Reward, decision_id)


def _insert_unless_taken(session: Session, table: Table, key: str, row: dict[str, Any]) -> bool:
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


@dataclass(frozen=True)
class StoredEvent:
    """The event already stored under an `event_key`."""

    decision_id: uuid.UUID
    kind: str
    occurred_at: datetime
    received_at: datetime


def insert_delivery_event(session: Session, *, event: dict[str, Any]) -> StoredEvent | None:
    """Store an event (columns of `DeliveryEvent`); if its `event_key` is taken, store nothing
    and return the event stored under it (committed, also by a concurrent request)."""
    key = event.get("event_key")
    if key is None:
        session.connection().execute(_INSERT_EVENT, event)
        return None
    while not _insert_unless_taken(session, _events, "event_key", event):
        row = session.connection().execute(_STORED_EVENT, {"key": key}).first()
        if row is not None:
            return StoredEvent(row[0], row[1], row[2], row[3])  # else purged in between
    return None


def update_reward_flags(session: Session, *, decision_id: uuid.UUID, **flags: bool) -> None:
    """Set guardrail and delivery flags (only ever from false to true)."""
    connection = session.connection()
    for flag, value in flags.items():
        if value:
            connection.execute(_SET_FLAG[flag], {"reward_of": decision_id})


def mark_contact_sent(session: Session, *, decision_id: uuid.UUID, status: str) -> None:
    """`sent` or `delivered`; a failed contact stays failed."""
    session.connection().execute(_CONTACT_SENT, {"contact_of": decision_id, "new_status": status})


def mark_contact_failed(session: Session, *, decision_id: uuid.UUID) -> None:
    """A bounced or failed contact no longer counts against the contact policy."""
    session.connection().execute(_CONTACT_FAILED, {"contact_of": decision_id})


@dataclass(frozen=True)
class StoredConversion:
    """A conversion already recorded under its `conversion_id`."""

    status: str
    decision_id: uuid.UUID | None
    customer_id: str
    kind: str
    value: float
    occurred_at: datetime


def stored_conversion(session: Session, *, conversion_id: str) -> StoredConversion | None:
    row = session.connection().execute(_STORED_CONVERSION, {"conversion_id": conversion_id}).first()
    return None if row is None else StoredConversion(*row)


def insert_conversion(session: Session, *, conversion: dict[str, Any]) -> StoredConversion | None:
    """Store a conversion (columns of `Conversion`); if its id is taken, store nothing and
    return the conversion stored under it (committed, also by a concurrent request)."""
    while not _insert_unless_taken(session, _conversions, "conversion_id", conversion):
        stored = stored_conversion(session, conversion_id=conversion["conversion_id"])
        if stored is not None:
            return stored  # else purged in between: the id is free again
    return None


def mark_conversion_late(session: Session, *, conversion_id: str) -> None:
    """A conversion whose decision's reward was already final when it arrived."""
    session.connection().execute(_CONVERSION_LATE, {"late_id": conversion_id})


def last_touch(session: Session, *, customer_id: str, occurred_at: datetime) -> uuid.UUID | None:
    """The customer's decision whose attribution window holds `occurred_at` and that touched
    last before it (contacts count from their send time, other decisions from their time)."""
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


@dataclass
class DueReward:
    """A pending reward whose window has closed, with what finalising it needs."""

    decision_id: uuid.UUID
    conversions: int
    conversion_value: float
    direct_value: float | None
    sent: bool
    failed: bool
    reason: str
    frame_key: str | None
    frame_version: int | None
    chosen_action_id: int | None


def due_rewards(session: Session, *, now: datetime, limit: int) -> list[DueReward]:
    logs, rewards = table_of(DecisionLog), table_of(Reward)
    rows = session.execute(
        rewards.select()
        .with_only_columns(
            rewards.c.decision_id,
            rewards.c.conversions,
            rewards.c.conversion_value,
            rewards.c.direct_value,
            rewards.c.sent,
            rewards.c.failed,
            logs.c.reason,
            logs.c.frame_key,
            logs.c.frame_version,
            logs.c.chosen_action_id,
        )
        .select_from(rewards.join(logs, logs.c.id == rewards.c.decision_id))
        .where(rewards.c.status == "pending", rewards.c.window_closes_at <= now)
        .order_by(rewards.c.window_closes_at, rewards.c.decision_id)
        .limit(limit)
    ).all()
    return [DueReward(*row) for row in rows]


def close_rewards(session: Session, *, closed: list[dict[str, Any]], now: datetime) -> None:
    """Write final or void outcomes: dicts of decision_id, status, value, sequence."""
    rewards = table_of(Reward)
    if closed:
        session.execute(
            update(rewards)
            .where(rewards.c.decision_id == bindparam("closing"))
            .values(
                status=bindparam("new_status"),
                value=bindparam("new_value"),
                sequence=bindparam("new_sequence"),
                finalized_at=now,
            ),
            [
                {
                    "closing": c["decision_id"],
                    "new_status": c["status"],
                    "new_value": c["value"],
                    "new_sequence": c["sequence"],
                }
                for c in closed
            ],
        )


def next_reward_sequence(session: Session) -> int:
    current = session.exec(select(func.max(Reward.sequence))).one()
    return int(current or 0) + 1


def frame_versions(session: Session, *, keys: set[str]) -> dict[tuple[str, int], DecisionFrame]:
    rows = session.exec(select(DecisionFrame).where(col(DecisionFrame.key).in_(keys))).all()
    return {(row.key, row.version): row for row in rows}


# --- usage, health classes and the outbox ----------------------------------------------------


@dataclass(frozen=True)
class UsageUpdate:
    customer_id: str
    previous_class: str
    usage_index: float
    health_class: str
    recency_days: float
    sessions_30d: float
    minutes_30d: float
    observed_at: datetime
    trigger_key: str | None


def health_classes_of(session: Session, *, ids: list[str]) -> dict[str, str]:
    """Current health class per known customer id."""
    customers = table_of(Customer)
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        rows = session.connection().execute(
            customers.select()
            .with_only_columns(customers.c.id, customers.c.health_class)
            .where(customers.c.id.in_(ids[start : start + 500]))
        )
        found.update({row[0]: row[1] for row in rows})
    return found


_UPDATE_USAGE = (
    update(_customer)
    .where(_customer.c.id == bindparam("customer"))
    .values(
        usage_index=bindparam("index"),
        health_class=bindparam("class_"),
        recency_days=bindparam("recency"),
        sessions_30d=bindparam("sessions"),
        minutes_30d=bindparam("minutes"),
        usage_observed_at=bindparam("observed"),
        updated_at=bindparam("observed"),
    )
)


def update_usage(session: Session, *, updates: list[UsageUpdate]) -> None:
    """Store usage observations and a class-change row for every customer whose class moved."""
    if not updates:
        return
    connection = session.connection()
    connection.execute(
        _UPDATE_USAGE,
        [
            {
                "customer": u.customer_id,
                "index": u.usage_index,
                "class_": u.health_class,
                "recency": u.recency_days,
                "sessions": u.sessions_30d,
                "minutes": u.minutes_30d,
                "observed": u.observed_at,
            }
            for u in updates
        ],
    )
    changes = [
        {
            "customer_id": u.customer_id,
            "previous": u.previous_class,
            "health_class": u.health_class,
            "usage_index": u.usage_index,
            "changed_at": u.observed_at,
            "trigger_key": u.trigger_key,
            "decision_id": None,
        }
        for u in updates
        if u.previous_class != u.health_class
    ]
    if changes:
        connection.execute(table_of(HealthClassChange).insert(), changes)


def pending_trigger_emissions(session: Session, *, limit: int) -> list[HealthClassChange]:
    """Worsening class changes whose decision has not been made yet."""
    return list(
        session.exec(
            select(HealthClassChange)
            .where(col(HealthClassChange.trigger_key).is_not(None))
            .where(col(HealthClassChange.decision_id).is_(None))
            .order_by(col(HealthClassChange.id))
            .limit(limit)
        ).all()
    )


def mark_emitted(session: Session, *, emitted: list[tuple[int, uuid.UUID]]) -> None:
    """Record the decision made for each (class change id, decision id)."""
    changes = table_of(HealthClassChange)
    if emitted:
        session.execute(
            update(changes)
            .where(changes.c.id == bindparam("change_id"))
            .values(decision_id=bindparam("made")),
            [{"change_id": c, "made": d} for c, d in emitted],
        )


def add_to_outbox(
    session: Session,
    *,
    decision_id: uuid.UUID,
    customer_id: str,
    channel_key: str,
    send_at: datetime,
    now: datetime,
) -> bool:
    """Queue a decision for its channel system; False if it is queued already."""
    outbox = table_of(Outbox)
    connection = session.connection()
    seen = connection.execute(
        outbox.select().with_only_columns(outbox.c.id).where(outbox.c.decision_id == decision_id)
    ).first()
    if seen is not None:
        return False
    connection.execute(
        outbox.insert(),
        {
            "decision_id": decision_id,
            "customer_id": customer_id,
            "channel_key": channel_key,
            "send_at": send_at,
            "created_at": now,
            "status": "pending",
        },
    )
    return True


def lease_outbox(
    session: Session, *, channel_key: str, limit: int, now: datetime, lease_until: datetime
) -> list[tuple[Outbox, DecisionLog]]:
    """Pending items for a channel (and ones whose lease ran out), leased to the caller."""
    statement = (
        select(Outbox, DecisionLog)
        .join(DecisionLog, col(DecisionLog.id) == col(Outbox.decision_id))
        .where(
            Outbox.channel_key == channel_key,
            (col(Outbox.status) == "pending")
            | ((col(Outbox.status) == "leased") & (col(Outbox.leased_until) < now)),
        )
        .order_by(col(Outbox.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True, of=Outbox)
    rows = list(session.exec(statement).all())
    for item, _ in rows:
        item.status = "leased"
        item.leased_until = lease_until
        session.add(item)
    return [(item, log) for item, log in rows]


def ack_outbox(session: Session, *, ids: list[int], now: datetime) -> list[Outbox]:
    items = list(session.exec(select(Outbox).where(col(Outbox.id).in_(ids))).all())
    for item in items:
        if item.status != "acked":
            item.status = "acked"
            item.acked_at = now
            session.add(item)
    return items


# --- reading decisions back in bulk (simulation, evaluation, exports) ------------------------


@dataclass(frozen=True)
class LoggedDecision:
    id: uuid.UUID
    created_at: datetime
    customer_id: str
    trigger_key: str
    frame_key: str | None
    reason: str
    context: dict[str, Any]
    candidate_action_ids: np.ndarray[Any, Any] | None
    probabilities: np.ndarray[Any, Any] | None
    chosen_action_id: int | None
    probability: float | None
    send_at: datetime | None
    policy_version: str | None


def decisions_by_id(session: Session, *, ids: list[uuid.UUID]) -> list[LoggedDecision]:
    found: list[LoggedDecision] = []
    for start in range(0, len(ids), 500):
        rows = session.exec(
            select(DecisionLog).where(col(DecisionLog.id).in_(ids[start : start + 500]))
        ).all()
        found.extend(_logged(row) for row in rows)
    order = {decision_id: i for i, decision_id in enumerate(ids)}
    return sorted(found, key=lambda d: order[d.id])


def _logged(row: DecisionLog) -> LoggedDecision:
    return LoggedDecision(
        id=row.id,
        created_at=row.created_at,
        customer_id=row.customer_id,
        trigger_key=row.trigger_key,
        frame_key=row.frame_key,
        reason=row.reason,
        context=row.context,
        candidate_action_ids=row.candidate_action_ids,
        probabilities=row.probabilities,
        chosen_action_id=row.chosen_action_id,
        probability=row.probability,
        send_at=row.send_at,
        policy_version=row.policy_version,
    )


def all_contacts(session: Session) -> list[tuple[str, str, str, datetime, datetime, str]]:
    """(customer, frame, channel, send time, reserved at, status) of every contact."""
    contacts = table_of(ContactHistory)
    rows = session.execute(
        contacts.select().with_only_columns(
            contacts.c.customer_id,
            contacts.c.frame_key,
            contacts.c.channel_key,
            contacts.c.send_at,
            contacts.c.created_at,
            contacts.c.status,
        )
    ).all()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


@dataclass(frozen=True)
class EvaluationRow:
    """A policy decision with a final reward, as offline evaluation reads it."""

    decision_id: uuid.UUID
    created_at: datetime
    frame_key: str
    trigger_key: str
    policy_version: str | None
    context: dict[str, Any]
    candidate_action_ids: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any]
    chosen_action_id: int
    probability: float
    reward: float
    unsubscribed: bool
    complained: bool
    reward_sequence: int | None = None


def evaluation_rows(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    frame_key: str | None = None,
    policy_version: str | None = None,
) -> list[EvaluationRow]:
    """Policy decisions with final rewards, oldest first (holdout and no-candidate decisions,
    pending and void rewards are left out: they say nothing about a policy)."""
    logs, rewards = _logs, _rewards
    statement = (
        logs.select()
        .with_only_columns(
            logs.c.id,
            logs.c.created_at,
            logs.c.frame_key,
            logs.c.trigger_key,
            logs.c.policy_version,
            logs.c.context,
            logs.c.candidate_action_ids,
            logs.c.probabilities,
            logs.c.chosen_action_id,
            logs.c.probability,
            rewards.c.value,
            rewards.c.unsubscribed,
            rewards.c.complained,
            rewards.c.sequence,
        )
        .select_from(logs.join(rewards, rewards.c.decision_id == logs.c.id))
        .where(rewards.c.status == "final", logs.c.reason.in_(("policy", "policy_no_contact")))
        .order_by(logs.c.created_at, logs.c.id)
    )
    if since is not None:
        statement = statement.where(logs.c.created_at >= since)
    if until is not None:
        statement = statement.where(logs.c.created_at < until)
    if frame_key is not None:
        statement = statement.where(logs.c.frame_key == frame_key)
    if policy_version is not None:
        statement = statement.where(logs.c.policy_version == policy_version)
    return [EvaluationRow(*row) for row in session.execute(statement)]


# --- API keys, frame state and the audit log -------------------------------------------------


def add_api_key(
    session: Session,
    *,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: list[str],
    actor: str,
    now: datetime,
) -> ApiKey:
    key = ApiKey(
        name=name, prefix=prefix, key_hash=key_hash, scopes=scopes, created_at=now, created_by=actor
    )
    session.add(key)
    session.flush()
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="key.create",
            subject=name,
            details={"scopes": scopes, "prefix": prefix},
        )
    )
    return key


def api_key_by_hash(session: Session, *, key_hash: str) -> ApiKey | None:
    return session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()


def api_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke_api_key(session: Session, *, key_id: int, actor: str, now: datetime) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return key
    key.revoked_at = now
    session.add(key)
    session.add(
        AuditLog(at=now, actor=actor, action="key.revoke", subject=key.name, details={"id": key_id})
    )
    return key


def frame_states(session: Session) -> dict[str, FrameState]:
    return {state.frame_key: state for state in session.exec(select(FrameState)).all()}


def set_frame_state(
    session: Session,
    *,
    frame_key: str,
    mode: str,
    reason: str,
    actor: str,
    now: datetime,
    metrics: dict[str, Any] | None = None,
) -> FrameState:
    state = session.get(FrameState, frame_key) or FrameState(frame_key=frame_key)
    state.mode = mode
    state.reason = reason
    state.changed_at = now
    state.changed_by = actor
    state.metrics = metrics
    session.add(state)
    return state


def add_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None,
    now: datetime,
) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, subject=subject, details=details))


def audit_entries(
    session: Session,
    *,
    action: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditLog]:
    statement = select(AuditLog).order_by(col(AuditLog.id).desc()).limit(limit)
    if action is not None:
        statement = statement.where(col(AuditLog.action).startswith(action))
    if subject is not None:
        statement = statement.where(col(AuditLog.subject).startswith(subject))
    if since is not None:
        statement = statement.where(col(AuditLog.at) >= since)
    return list(session.exec(statement).all())


def frame_versions_of(session: Session, *, key: str) -> list[DecisionFrame]:
    return list(
        session.exec(
            select(DecisionFrame)
            .where(DecisionFrame.key == key)
            .order_by(col(DecisionFrame.version))
        ).all()
    )


@dataclass(frozen=True)
class WindowCounts:
    """Live outcome counts of a frame's decisions in a time window."""

    contacts: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    converted: int = 0
    holdout: int = 0
    holdout_converted: int = 0


def frame_window_counts(
    session: Session, *, frame_key: str, since: datetime, until: datetime
) -> WindowCounts:
    logs, rewards = _logs, _rewards
    policy = logs.c.reason == "policy"
    holdout = logs.c.reason == "holdout"
    converted = rewards.c.conversions > 0

    def total(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = session.execute(
        logs.select()
        .with_only_columns(
            total(policy),
            total(policy & rewards.c.unsubscribed),
            total(policy & rewards.c.complained),
            total(policy & converted),
            total(holdout),
            total(holdout & converted),
        )
        .select_from(logs.join(rewards, rewards.c.decision_id == logs.c.id))
        .where(logs.c.frame_key == frame_key, logs.c.created_at >= since, logs.c.created_at < until)
    ).one()
    return WindowCounts(*(int(v) for v in row))


@dataclass(frozen=True)
class WindowSpend:
    """Offer cost of a frame's policy decisions (contact or not) in a time window."""

    decisions: int = 0
    offer_cost: float = 0.0


def frame_window_spend(
    session: Session, *, frame_key: str, since: datetime, until: datetime
) -> WindowSpend:
    """Policy decisions, contact or no contact, and the summed offer cost of what they chose
    (at the offers' current cost): the denominator the promotion gate uses offline."""
    logs, actions, offers = _logs, table_of(Action), table_of(Offer)
    row = session.execute(
        logs.select()
        .with_only_columns(func.count(), func.coalesce(func.sum(offers.c.cost), 0.0))
        .select_from(
            logs.outerjoin(actions, actions.c.id == logs.c.chosen_action_id).outerjoin(
                offers, offers.c.key == actions.c.offer_key
            )
        )
        .where(
            logs.c.frame_key == frame_key,
            logs.c.reason.in_(("policy", "policy_no_contact")),
            logs.c.created_at >= since,
            logs.c.created_at < until,
        )
    ).one()
    return WindowSpend(decisions=int(row[0]), offer_cost=float(row[1]))


# --- privacy: erasure and retention ----------------------------------------------------------


def pseudonym(customer_id: str, salt: str) -> str:
    """A stable replacement id: the statistical record stays linkable, the person does not."""
    import hashlib

    return "erased-" + hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()[:24]


def erased_alias(session: Session, *, customer_id: str, salt: str) -> str | None:
    """The pseudonym of a customer who was erased and has no profile again; None otherwise.
    Feedback about such a customer is stored under the pseudonym, not under the erased id."""
    if session.get(Customer, customer_id) is not None:
        return None
    alias = pseudonym(customer_id, salt)
    audit = table_of(AuditLog)
    erased = (
        session.connection()
        .execute(
            audit.select()
            .with_only_columns(audit.c.id)
            .where(audit.c.action == "customer.erase", audit.c.subject == alias)
            .limit(1)
        )
        .first()
    )
    return alias if erased is not None else None


def erase_customer(
    session: Session, *, customer_id: str, salt: str, actor: str, now: datetime
) -> bool:
    """Delete the profile, consents, contact history, usage and outbox entries, and replace the
    customer id in decision logs, conversions and audit subjects by a pseudonym. False if
    unknown. The customer's row lock keeps a concurrent decision from logging the raw id."""
    customer = lock_customer(session, customer_id=customer_id)
    if customer is None:
        return False
    alias = pseudonym(customer_id, salt)
    connection = session.connection()
    for table in (Consent, ContactHistory, HealthClassChange, Outbox):
        t = table_of(table)
        connection.execute(t.delete().where(t.c.customer_id == customer_id))
    logged = connection.execute(
        _logs.select()
        .with_only_columns(_logs.c.id, _logs.c.response)
        .where(_logs.c.customer_id == customer_id)
    ).all()
    for decision_id, response in logged:
        answer = dict(response or {})
        answer["customer_id"] = alias
        connection.execute(
            update(_logs)
            .where(_logs.c.id == decision_id)
            .values(customer_id=alias, response=answer)
        )
    connection.execute(
        update(_conversions)
        .where(_conversions.c.customer_id == customer_id)
        .values(customer_id=alias)
    )
    audit = table_of(AuditLog)
    subjects = connection.execute(
        audit.select()
        .with_only_columns(audit.c.id, audit.c.subject)
        .where(
            or_(
                audit.c.subject == customer_id,
                audit.c.subject.startswith(f"{customer_id}/", autoescape=True),
            )
        )
    ).all()
    for entry_id, subject in subjects:
        connection.execute(
            update(audit)
            .where(audit.c.id == entry_id)
            .values(subject=alias + subject[len(customer_id) :])
        )
    connection.execute(table_of(Customer).delete().where(table_of(Customer).c.id == customer_id))
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="customer.erase",
            subject=alias,
            details={"pseudonym": alias},
        )
    )
    return True


@dataclass(frozen=True)
class Purged:
    decisions: int
    conversions: int
    contacts: int
    audit: int
    health_changes: int = 0
    checkpoints: int = 0


def purge_before(
    session: Session,
    *,
    logs_before: datetime,
    audit_before: datetime,
    keep_checkpoints: int = 20,
) -> Purged:
    """Delete decision logs (with their rewards, events and outbox rows), conversions,
    contacts and health-class changes older than `logs_before`, audit entries older than
    `audit_before`, and all but the newest `keep_checkpoints` learner checkpoints per policy."""
    connection = session.connection()
    old = _logs.select().with_only_columns(_logs.c.id).where(_logs.c.created_at < logs_before)
    for table in (Reward, DeliveryEvent, Outbox):
        t = table_of(table)
        connection.execute(t.delete().where(t.c.decision_id.in_(old)))
    decisions = connection.execute(_logs.delete().where(_logs.c.created_at < logs_before)).rowcount
    conversions = connection.execute(
        _conversions.delete().where(_conversions.c.occurred_at < logs_before)
    ).rowcount
    contacts = connection.execute(
        _contacts.delete().where(_contacts.c.send_at < logs_before)
    ).rowcount
    audit = table_of(AuditLog)
    audited = connection.execute(audit.delete().where(audit.c.at < audit_before)).rowcount
    changes = table_of(HealthClassChange)
    health_changes = connection.execute(
        changes.delete().where(changes.c.changed_at < logs_before)
    ).rowcount
    checkpoints = table_of(LearnerCheckpoint)
    pruned = 0
    for (name,) in connection.execute(
        checkpoints.select().with_only_columns(checkpoints.c.policy_name).distinct()
    ).all():
        newest = (
            checkpoints.select()
            .with_only_columns(checkpoints.c.id)
            .where(checkpoints.c.policy_name == name)
            .order_by(checkpoints.c.id.desc())
            .limit(keep_checkpoints)
        )
        kept = [row[0] for row in connection.execute(newest).all()]
        pruned += connection.execute(
            checkpoints.delete().where(
                checkpoints.c.policy_name == name, checkpoints.c.id.not_in(kept)
            )
        ).rowcount
    return Purged(
        int(decisions),
        int(conversions),
        int(contacts),
        int(audited),
        int(health_changes),
        pruned,
    )
