"""The kill switch protects the frame even when the rollback cannot happen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from campaign_db import queries
from campaign_db.engine import session_scope
from campaign_db.models import AuditLog
from campaign_db.types import utcnow
from optimizer.guardrails import SAFE, FrameHealth, trip


def test_safe_mode_holds_when_the_registry_is_down(loaded_engine: Engine) -> None:
    def rollback(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("MLflow unreachable")

    health = FrameHealth(
        frame_key="churn_prevention",
        mode="normal",
        window_days=7,
        contacts=900,
        unsubscribe_rate=0.08,
        complaint_rate=0.0,
        conversion_rate=0.1,
        holdout_conversion_rate=None,
        previous_conversion_rate=None,
        breaches=["unsubscribe rate 0.0800 above 0.0300"],
    )
    trip(
        loaded_engine,
        "churn_prevention",
        health=health,
        rollback=rollback,
        actor="guardrails",
        now=utcnow(),
    )
    with session_scope(loaded_engine) as session:
        assert queries.frame_states(session)["churn_prevention"].mode == SAFE
        entry = session.exec(select(AuditLog).where(AuditLog.action == "frame.kill_switch")).one()
    assert entry.details is not None
    assert entry.details["rollback"] == "not rolled back: MLflow unreachable"
