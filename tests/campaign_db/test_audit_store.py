"""The audit log behaves alike in memory and on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from campaign_db.audit import SqlAuditLog
from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.audit import AuditEntry, AuditLog

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture
def audit(store_engine: Engine | None) -> AuditLog:
    return MemoryAuditLog() if store_engine is None else SqlAuditLog(store_engine)


def test_entries_come_newest_first_and_filter_by_prefix_and_time(audit: AuditLog) -> None:
    for i, (action, subject) in enumerate(
        [("policy.promoted", "churn"), ("frame.approved", "churn"), ("policy.rolled_back", "win")]
    ):
        audit.add(
            AuditEntry(
                actor="ops" if i < 2 else "learner",
                action=action,
                subject=subject,
                at=T0 + timedelta(hours=i),
                details={"step": i, "notes": ["a", "b"]},
            )
        )
    assert [e.action for e in audit.entries()] == [
        "policy.rolled_back",
        "frame.approved",
        "policy.promoted",
    ]
    assert [e.subject for e in audit.entries(action="policy.")] == ["win", "churn"]
    assert [e.action for e in audit.entries(subject="ch")] == ["frame.approved", "policy.promoted"]
    assert len(audit.entries(since=T0 + timedelta(minutes=30))) == 2
    assert [e.actor for e in audit.entries(actor="learn")] == ["learner"]
    assert [e.action for e in audit.entries(actor="ops", action="policy.")] == ["policy.promoted"]
    assert len(audit.entries(limit=1)) == 1
    newest = audit.entries(limit=1)[0]
    assert newest.details == {"step": 2, "notes": ["a", "b"]}
    assert newest.at == T0 + timedelta(hours=2)
    assert newest.id is not None
