"""Keyword-only queries: the only place outside migrations where SQL is spoken."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func
from sqlmodel import Session, SQLModel, col, select

from campaign_db.models import (
    Action,
    ApiKey,
    AuditLog,
    Channel,
    ContactHistory,
    Conversion,
    DecisionFrame,
    DecisionLog,
    FrameState,
    Offer,
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


# --- contact history ------------------------------------------------------------------------

COUNTED_CONTACT_STATUSES = ("reserved", "sent", "delivered")
"""Contacts that count against the contact policy: all but failed and cancelled ones."""


def table_of(model: type[SQLModel]) -> Table:
    table = getattr(model, "__table__")  # noqa: B009 (SQLModel does not type __table__)
    assert isinstance(table, Table)
    return table


# --- decisions, read back --------------------------------------------------------------------


def get_decision(session: Session, *, decision_id: uuid.UUID) -> DecisionLog | None:
    return session.get(DecisionLog, decision_id)


def actions_by_id(session: Session, *, ids: list[int]) -> dict[int, Action]:
    rows = session.exec(select(Action).where(col(Action.id).in_(ids))).all()
    return {row.id: row for row in rows if row.id is not None}


# --- decision and outcome tables, frame versions ---------------------------------------------

_logs = table_of(DecisionLog)
_rewards = table_of(Reward)
_contacts = table_of(ContactHistory)
_conversions = table_of(Conversion)


def frame_versions(session: Session, *, keys: set[str]) -> dict[tuple[str, int], DecisionFrame]:
    rows = session.exec(select(DecisionFrame).where(col(DecisionFrame.key).in_(keys))).all()
    return {(row.key, row.version): row for row in rows}


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
