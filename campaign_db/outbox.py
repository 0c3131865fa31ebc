"""Usage, health-class changes and the outbox behind the optimizer's `OutboxStore` port."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import Customer, DecisionLog, HealthClassChange, Outbox, chunks, table_of
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.outbox import (
    AckedContact,
    Emission,
    LeasedContact,
    PendingEmission,
    TriggerTable,
    UsageApplied,
    UsageObservation,
)

_customer = table_of(Customer)
_changes = table_of(HealthClassChange)
_outbox = table_of(Outbox)


def health_classes_of(session: Session, *, ids: list[str]) -> dict[str, str]:
    """Current health class per known customer id."""
    found: dict[str, str] = {}
    for batch in chunks(ids):
        rows = session.connection().execute(
            _customer.select()
            .with_only_columns(_customer.c.id, _customer.c.health_class)
            .where(_customer.c.id.in_(batch))
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


def update_usage(session: Session, *, applied: list[tuple[UsageObservation, UsageApplied]]) -> None:
    """Store usage observations and a class-change row for every customer whose class moved."""
    if not applied:
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
            for u, _ in applied
        ],
    )
    changes = [
        {
            "customer_id": u.customer_id,
            "previous": a.previous_class,
            "health_class": u.health_class,
            "usage_index": u.usage_index,
            "changed_at": u.observed_at,
            "trigger_key": a.trigger,
            "decision_id": None,
        }
        for u, a in applied
        if a.previous_class != u.health_class
    ]
    if changes:
        connection.execute(_changes.insert(), changes)


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
    if emitted:
        session.execute(
            update(_changes)
            .where(_changes.c.id == bindparam("change_id"))
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
    connection = session.connection()
    seen = connection.execute(
        _outbox.select().with_only_columns(_outbox.c.id).where(_outbox.c.decision_id == decision_id)
    ).first()
    if seen is not None:
        return False
    connection.execute(
        _outbox.insert(),
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


def ack_outbox(session: Session, *, ids: Sequence[int], now: datetime) -> list[Outbox]:
    items = list(session.exec(select(Outbox).where(col(Outbox.id).in_(ids))).all())
    for item in items:
        if item.status != "acked":
            item.status = "acked"
            item.acked_at = now
            session.add(item)
    return items


class SqlOutboxStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply_usage(
        self, observations: Sequence[UsageObservation], *, triggers: TriggerTable
    ) -> list[UsageApplied]:
        with session_scope(self.engine, write=True) as session:
            current = health_classes_of(session, ids=[o.customer_id for o in observations])
            applied = []
            for observation in observations:
                previous = current.get(observation.customer_id)
                if previous is None:
                    raise UnknownCustomerError(observation.customer_id)
                new = observation.health_class
                trigger = None if new == previous else triggers.get((previous, new))
                applied.append(
                    (
                        observation,
                        UsageApplied(observation.customer_id, previous, new, trigger),
                    )
                )
                current[observation.customer_id] = new
            update_usage(session, applied=applied)
        return [a for _, a in applied]

    def pending_emissions(self, *, limit: int) -> list[PendingEmission]:
        with session_scope(self.engine) as session:
            return [
                PendingEmission(
                    change_id=change.id,
                    customer_id=change.customer_id,
                    trigger=change.trigger_key,
                    changed_at=change.changed_at,
                )
                for change in pending_trigger_emissions(session, limit=limit)
                if change.id is not None and change.trigger_key is not None
            ]

    def record_emissions(self, emissions: Sequence[Emission], *, now: datetime) -> None:
        if not emissions:
            return
        with session_scope(self.engine, write=True) as session:
            for emission in emissions:
                if emission.queued is not None:
                    add_to_outbox(
                        session,
                        decision_id=emission.queued.decision_id,
                        customer_id=emission.queued.customer_id,
                        channel_key=emission.queued.channel,
                        send_at=emission.queued.send_at,
                        now=now,
                    )
            mark_emitted(session, emitted=[(e.change_id, e.decision_id) for e in emissions])

    def lease(
        self, *, channel: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[LeasedContact]:
        with session_scope(self.engine, write=True) as session:
            return [
                LeasedContact(
                    outbox_id=item.id or 0,
                    decision_id=item.decision_id,
                    customer_id=item.customer_id,
                    channel=item.channel_key,
                    send_at=item.send_at,
                    answer=log.response,
                )
                for item, log in lease_outbox(
                    session, channel_key=channel, limit=limit, now=now, lease_until=lease_until
                )
            ]

    def ack(self, *, ids: Sequence[int], now: datetime) -> list[AckedContact]:
        with session_scope(self.engine, write=True) as session:
            return [
                AckedContact(outbox_id=item.id, decision_id=item.decision_id)
                for item in ack_outbox(session, ids=ids, now=now)
                if item.id is not None
            ]
