"""Privacy and retention: who was erased, and deleting what is older than the retention period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from campaign_db.engine import session_scope
from campaign_db.models import (
    AuditLog,
    ContactHistory,
    Conversion,
    Customer,
    DecisionLog,
    DeliveryEvent,
    HealthClassChange,
    LearnerCheckpoint,
    Outbox,
    RankingEvent,
    RankingLog,
    Reward,
    SlotReward,
    table_of,
)
from optimizer.core.privacy import pseudonym

_logs = table_of(DecisionLog)
_contacts = table_of(ContactHistory)
_conversions = table_of(Conversion)


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
    """Delete decision and ranking logs (with their rewards, events and outbox rows), conversions,
    contacts and health-class changes older than `logs_before`, audit entries older than
    `audit_before`, and all but the newest `keep_checkpoints` learner checkpoints per policy."""
    connection = session.connection()
    old = _logs.select().with_only_columns(_logs.c.id).where(_logs.c.created_at < logs_before)
    for table in (Reward, DeliveryEvent, Outbox):
        t = table_of(table)
        connection.execute(t.delete().where(t.c.decision_id.in_(old)))
    decisions = connection.execute(_logs.delete().where(_logs.c.created_at < logs_before)).rowcount
    rankings = table_of(RankingLog)
    old_rankings = (
        rankings.select()
        .with_only_columns(rankings.c.id)
        .where(rankings.c.created_at < logs_before)
    )
    for ranked in (table_of(SlotReward), table_of(RankingEvent)):
        connection.execute(ranked.delete().where(ranked.c.ranking_id.in_(old_rankings)))
    connection.execute(rankings.delete().where(rankings.c.created_at < logs_before))
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


def purge(engine: Engine, *, logs_before: datetime, audit_before: datetime) -> Purged:
    """`purge_before` in a transaction of its own (the retention job)."""
    with session_scope(engine, write=True) as session:
        return purge_before(session, logs_before=logs_before, audit_before=audit_before)
