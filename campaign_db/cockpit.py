"""The cockpit's reads: per-day decision counts of a frame and one decision's later events,
behind the optimizer's `CockpitReader` port."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, case, func
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import Conversion, DecisionLog, DeliveryEvent, Reward, table_of
from optimizer.core.values import DecisionReason
from optimizer.ports.cockpit import DayCounts, DecisionEvent

_logs, _rewards = table_of(DecisionLog), table_of(Reward)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def daily_counts(session: Session, *, frame_key: str, days: list[date]) -> list[DayCounts]:
    """Days are bucketed by comparing with UTC midnights, so SQLite and PostgreSQL agree
    whatever the server's time zone."""
    if not days:
        return []
    bounds = [_midnight(d) for d in days]
    end = _midnight(days[-1] + timedelta(days=1))
    bucket = case(
        *((_logs.c.created_at < bound, i - 1) for i, bound in enumerate(bounds[1:], start=1)),
        else_=len(days) - 1,
    )
    contact = _logs.c.reason == DecisionReason.policy.value

    def total(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    rows = session.execute(
        _logs.select()
        .with_only_columns(
            bucket.label("bucket"),
            func.count(),
            total(contact),
            total(contact & (func.coalesce(_rewards.c.conversions, 0) > 0)),
        )
        .select_from(_logs.outerjoin(_rewards, _rewards.c.decision_id == _logs.c.id))
        .where(
            _logs.c.frame_key == frame_key,
            _logs.c.created_at >= bounds[0],
            _logs.c.created_at < end,
        )
        .group_by("bucket")
    ).all()
    found = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    return [DayCounts(day, *found.get(i, (0, 0, 0))) for i, day in enumerate(days)]


def decision_events(session: Session, *, decision_id: uuid.UUID) -> list[DecisionEvent]:
    found = [
        DecisionEvent(
            at=e.occurred_at, kind=e.kind, detail=f"received {e.received_at:%Y-%m-%d %H:%M}"
        )
        for e in session.exec(
            select(DeliveryEvent).where(DeliveryEvent.decision_id == decision_id)
        ).all()
    ]
    found += [
        DecisionEvent(
            at=c.occurred_at,
            kind="conversion",
            detail=f"{c.kind}, value {c.value:.2f} ({c.status})",
        )
        for c in session.exec(
            select(Conversion)
            .where(Conversion.decision_id == decision_id)
            .order_by(col(Conversion.occurred_at))
        ).all()
    ]
    reward = session.get(Reward, decision_id)
    if reward is not None:
        value = "—" if reward.value is None else f"{reward.value:g}"
        found.append(
            DecisionEvent(
                at=reward.finalized_at or reward.window_closes_at,
                kind=f"reward {reward.status}",
                detail=f"value {value}, {reward.conversions} conversion(s); "
                f"window closes {reward.window_closes_at:%Y-%m-%d %H:%M}",
            )
        )
    return sorted(found, key=lambda e: e.at)


class SqlCockpitReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def daily_counts(self, *, frame_key: str, days: list[date]) -> list[DayCounts]:
        with session_scope(self.engine) as session:
            return daily_counts(session, frame_key=frame_key, days=days)

    def decision_events(self, decision_id: uuid.UUID) -> list[DecisionEvent]:
        with session_scope(self.engine) as session:
            return decision_events(session, decision_id=decision_id)
