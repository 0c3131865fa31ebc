"""The guardrail monitor: the kill switch protects the frame even when the rollback cannot
happen, and live offer cost per decision is held to the frame's limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from campaign_db.audit import SqlAuditLog
from campaign_db.catalog import read_snapshot
from campaign_db.engine import session_scope
from campaign_db.governance import SqlGovernanceStore
from campaign_db.models import AuditLog, DecisionLog
from optimizer.core.catalog import FrameVersion, split_signature
from optimizer.core.values import utcnow
from optimizer.guardrails import SAFE, FrameHealth, GuardrailMonitor
from tests.optimizer.helpers import serve_churn_decisions


def monitor_of(engine: Engine) -> GuardrailMonitor:
    return GuardrailMonitor(SqlGovernanceStore(engine), SqlAuditLog(engine))


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
    monitor_of(loaded_engine).trip(
        "churn_prevention",
        health=health,
        rollback=rollback,
        actor="guardrails",
        now=utcnow(),
    )
    assert SqlGovernanceStore(loaded_engine).states()["churn_prevention"].mode == SAFE
    with session_scope(loaded_engine) as session:
        entry = session.exec(select(AuditLog).where(AuditLog.action == "frame.kill_switch")).one()
    assert entry.details is not None
    assert entry.details["rollback"] == "not rolled back: MLflow unreachable"


def _with_cost_limit(frame: FrameVersion, limit: float) -> FrameVersion:
    guardrails = frame.spec.guardrails.model_copy(
        update={"max_offer_cost_per_decision": limit, "min_decisions": 5}
    )
    return replace(frame, spec=frame.spec.model_copy(update={"guardrails": guardrails}))


def _policy_decisions_and_cost(engine: Engine) -> tuple[int, float]:
    """Policy decisions (holdout ones left out) and their mean offer cost, from the log."""
    with session_scope(engine) as session:
        snapshot = read_snapshot(session)
        chosen = session.exec(
            select(DecisionLog.chosen_action_id).where(
                col(DecisionLog.reason).in_(("policy", "policy_no_contact"))
            )
        ).all()
    signatures = {a: s for s, a in snapshot.actions.items()}
    costs = []
    for action_id in chosen:
        offer = split_signature(signatures[action_id])[0] if action_id is not None else None
        costs.append(snapshot.offers[offer].cost if offer in snapshot.offers else 0.0)
    return len(costs), sum(costs) / len(costs)


def test_monitor_trips_a_frame_whose_offer_cost_per_decision_is_above_its_limit(
    loaded_engine: Engine,
) -> None:
    """20 class D decisions by the untrained policy choose free months and discounts about half
    the time: far above a limit of 0.50 per decision, so the frame goes to safe mode."""
    start = datetime(2026, 11, 24, 7, tzinfo=UTC)
    serve_churn_decisions(loaded_engine, customers_n=20, start=start)
    decisions, realised = _policy_decisions_and_cost(loaded_engine)
    with session_scope(loaded_engine) as session:
        frame = next(f for f in read_snapshot(session).frames if f.key == "churn_prevention")

    (health,) = monitor_of(loaded_engine).monitor(
        [_with_cost_limit(frame, 0.5)],
        rollback=None,
        now=start + timedelta(days=1),
    )

    assert health.decisions == decisions
    assert health.offer_cost_per_decision == pytest.approx(realised)
    assert health.max_offer_cost_per_decision == 0.5
    assert health.mode == SAFE
    assert any("offer cost per decision" in b for b in health.breaches)
    state = SqlGovernanceStore(loaded_engine).states()["churn_prevention"]
    assert state.mode == SAFE
    assert "offer cost per decision" in state.reason


def test_offer_cost_within_the_limit_does_not_trip_the_frame(loaded_engine: Engine) -> None:
    start = datetime(2026, 11, 24, 7, tzinfo=UTC)
    serve_churn_decisions(loaded_engine, customers_n=20, start=start)
    with session_scope(loaded_engine) as session:
        frame = next(f for f in read_snapshot(session).frames if f.key == "churn_prevention")

    (health,) = monitor_of(loaded_engine).monitor(
        [_with_cost_limit(frame, 12.0)], rollback=None, now=start + timedelta(days=1)
    )

    assert health.offer_cost_per_decision is not None
    assert 0.0 < health.offer_cost_per_decision <= 12.0
    assert not any("offer cost" in b for b in health.breaches)
    assert health.mode != SAFE


def test_decisions_outside_the_window_do_not_count_towards_spend(loaded_engine: Engine) -> None:
    start = datetime(2026, 11, 24, 7, tzinfo=UTC)
    serve_churn_decisions(loaded_engine, customers_n=6, start=start)
    with session_scope(loaded_engine) as session:
        frame = next(f for f in read_snapshot(session).frames if f.key == "churn_prevention")

    (health,) = monitor_of(loaded_engine).monitor(
        [_with_cost_limit(frame, 0.0)], rollback=None, now=start + timedelta(days=9)
    )

    assert health.decisions == 0
    assert health.offer_cost_per_decision is None
    assert health.mode != SAFE
