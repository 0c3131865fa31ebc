"""Keyword-only queries: the only place outside migrations where SQL is spoken."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from campaign_db.models import (
    AuditLog,
    ContactHistory,
    Conversion,
    DecisionFrame,
    DecisionLog,
    Reward,
)

# --- contact history ------------------------------------------------------------------------

COUNTED_CONTACT_STATUSES = ("reserved", "sent", "delivered")
"""Contacts that count against the contact policy: all but failed and cancelled ones."""


def table_of(model: type[SQLModel]) -> Table:
    table = getattr(model, "__table__")  # noqa: B009 (SQLModel does not type __table__)
    assert isinstance(table, Table)
    return table


# --- decision and outcome tables, frame versions ---------------------------------------------

_logs = table_of(DecisionLog)
_rewards = table_of(Reward)
_contacts = table_of(ContactHistory)
_conversions = table_of(Conversion)


def frame_versions(session: Session, *, keys: set[str]) -> dict[tuple[str, int], DecisionFrame]:
    rows = session.exec(select(DecisionFrame).where(col(DecisionFrame.key).in_(keys))).all()
    return {(row.key, row.version): row for row in rows}


# --- API keys, frame state and the audit log -------------------------------------------------


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
