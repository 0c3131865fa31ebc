"""The audit log table behind the optimizer's `AuditLog` port."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import AuditLog as AuditRow
from optimizer.ports.audit import AuditEntry


def add_audit(session: Session, entry: AuditEntry) -> None:
    """Append an entry inside the caller's transaction (where it must commit with other writes)."""
    details: dict[str, Any] | None = None if entry.details is None else dict(entry.details)
    session.add(
        AuditRow(
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            details=details,
        )
    )


def audit_entries(
    session: Session,
    *,
    action: str | None = None,
    subject: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    statement = select(AuditRow).order_by(col(AuditRow.id).desc()).limit(limit)
    if action is not None:
        statement = statement.where(col(AuditRow.action).startswith(action))
    if subject is not None:
        statement = statement.where(col(AuditRow.subject).startswith(subject))
    if actor is not None:
        statement = statement.where(col(AuditRow.actor).startswith(actor))
    if since is not None:
        statement = statement.where(col(AuditRow.at) >= since)
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            subject=row.subject,
            details=row.details,
        )
        for row in session.exec(statement).all()
    ]


class SqlAuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, entry: AuditEntry) -> None:
        with session_scope(self.engine, write=True) as session:
            add_audit(session, entry)

    def entries(
        self,
        *,
        action: str | None = None,
        subject: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        with session_scope(self.engine) as session:
            return audit_entries(
                session, action=action, subject=subject, actor=actor, since=since, limit=limit
            )
