"""Closing due rewards behind the optimizer's `RewardStore`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, bindparam, func, update
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import (
    Action,
    DecisionFrame,
    DecisionLog,
    Offer,
    Reward,
    SlotReward,
    chunks,
    table_of,
)
from optimizer.core.catalog import HarmSpec
from optimizer.ports.rewards import ClosedReward, DueReward, RewardTerms

_logs = table_of(DecisionLog)
_rewards = table_of(Reward)
_actions = table_of(Action)
_offers = table_of(Offer)
_frames = table_of(DecisionFrame)

_DUE = (
    _rewards.select()
    .with_only_columns(
        _rewards.c.decision_id,
        _rewards.c.conversions,
        _rewards.c.conversion_value,
        _rewards.c.direct_value,
        _rewards.c.sent,
        _rewards.c.failed,
        _logs.c.reason,
        func.coalesce(_offers.c.cost, 0.0),
        _frames.c.reward_definition,
        _frames.c.reward_range,
        _frames.c.reward_harm,
        _rewards.c.unsubscribed,
        _rewards.c.complained,
    )
    .select_from(
        _rewards.join(_logs, _logs.c.id == _rewards.c.decision_id)
        .outerjoin(_actions, _actions.c.id == _logs.c.chosen_action_id)
        .outerjoin(_offers, _offers.c.key == _actions.c.offer_key)
        .outerjoin(
            _frames,
            (_frames.c.key == _logs.c.frame_key) & (_frames.c.version == _logs.c.frame_version),
        )
    )
    .where(_rewards.c.status == "pending", _rewards.c.window_closes_at <= bindparam("now"))
    .order_by(_rewards.c.window_closes_at, _rewards.c.decision_id)
    .limit(bindparam("limit"))
)
_CLOSE = (
    update(_rewards)
    .where(_rewards.c.decision_id == bindparam("closing"), _rewards.c.status == "pending")
    .values(
        status=bindparam("new_status"),
        value=bindparam("new_value"),
        sequence=bindparam("new_sequence"),
        finalized_at=bindparam("closed_at"),
    )
)


def reward_terms(
    definition: str, reward_range: list[float] | None, harm: dict[str, float] | None
) -> RewardTerms:
    """A frame row's reward terms; a version stored before harm costs existed has none."""
    return RewardTerms(definition, tuple(reward_range or ()), HarmSpec.model_validate(harm or {}))


def due_rewards(session: Session, *, now: datetime, limit: int) -> list[DueReward]:
    rows = session.connection().execute(_DUE, {"now": now, "limit": limit}).all()
    return [
        DueReward(
            *row[:8],
            terms=None if row[8] is None else reward_terms(row[8], row[9], row[10]),
            unsubscribed=bool(row[11]),
            complained=bool(row[12]),
        )
        for row in rows
    ]


def still_pending(session: Session, *, closed: Sequence[ClosedReward]) -> set[uuid.UUID]:
    """The rewards among `closed` that are pending, locked on PostgreSQL until the commit."""
    found: set[uuid.UUID] = set()
    for ids in chunks([c.decision_id for c in closed]):
        statement = select(Reward.decision_id).where(
            Reward.status == "pending", col(Reward.decision_id).in_(ids)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()
        found.update(session.exec(statement).all())
    return found


def close_rewards(session: Session, *, closed: Sequence[ClosedReward], now: datetime) -> None:
    """Write final or void outcomes; final ones take the next sequence numbers in order."""
    pending = still_pending(session, closed=closed)
    sequence = next_reward_sequence(session)
    rows = []
    for reward in closed:
        if reward.decision_id not in pending:
            continue
        final = reward.value is not None
        rows.append(
            {
                "closing": reward.decision_id,
                "new_status": "final" if final else "void",
                "new_value": reward.value,
                "new_sequence": sequence if final else None,
                "closed_at": now,
            }
        )
        sequence += final
    if rows:
        session.connection().execute(_CLOSE, rows)


def next_reward_sequence(session: Session) -> int:
    """The next number in the learner's sequence, which push and ranking slot rewards share."""
    current = session.exec(select(func.max(Reward.sequence))).one()
    slots = session.exec(select(func.max(SlotReward.sequence))).one()
    return max(int(current or 0), int(slots or 0)) + 1


class SqlRewardStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def due_rewards(self, *, now: datetime, limit: int) -> list[DueReward]:
        with session_scope(self.engine) as session:
            return due_rewards(session, now=now, limit=limit)

    def close_rewards(self, *, closed: Sequence[ClosedReward], now: datetime) -> None:
        if not closed:
            return
        with session_scope(self.engine, write=True) as session:
            close_rewards(session, closed=closed, now=now)
