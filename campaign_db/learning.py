"""Queries of the learning aggregate: final rewards in sequence order and the learner's
checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func
from sqlmodel import Session, col, select

from campaign_db.models import DecisionLog, LearnerCheckpoint, Reward

LEARNED_REASONS = ("policy", "policy_no_contact")


@dataclass(frozen=True)
class LearnableReward:
    sequence: int
    policy_name: str
    context: dict[str, Any]
    action_ids: np.ndarray[Any, Any]
    chosen_action_id: int
    probability: float
    reward: float


def final_rewards_after(
    session: Session,
    *,
    cursor: int,
    limit: int,
    policy_name: str | None = None,
    through: int | None = None,
) -> list[LearnableReward]:
    """Final rewards of policy decisions after `cursor` (up to `through`, of one policy if
    named), in sequence order."""
    query = (
        select(  # type: ignore[call-overload,misc]
            Reward.sequence,
            DecisionLog.policy_name,
            DecisionLog.context,
            DecisionLog.candidate_action_ids,
            DecisionLog.chosen_action_id,
            DecisionLog.probability,
            Reward.value,
        )
        .join(DecisionLog, col(DecisionLog.id) == col(Reward.decision_id))
        .where(
            Reward.status == "final",
            col(Reward.sequence) > cursor,
            col(DecisionLog.reason).in_(LEARNED_REASONS),
        )
    )
    if policy_name is not None:
        query = query.where(DecisionLog.policy_name == policy_name)
    if through is not None:
        query = query.where(col(Reward.sequence) <= through)
    rows = session.execute(query.order_by(col(Reward.sequence)).limit(limit)).all()
    return [
        LearnableReward(
            sequence=int(seq),
            policy_name=str(name),
            context=context,
            action_ids=ids,
            chosen_action_id=int(chosen),
            probability=float(probability),
            reward=float(value),
        )
        for seq, name, context, ids, chosen, probability, value in rows
    ]


def newest_checkpoint(
    session: Session, *, policy_name: str, cursor: int | None = None
) -> LearnerCheckpoint | None:
    """The policy's newest learner checkpoint (at exactly `cursor`, if given)."""
    query = select(LearnerCheckpoint).where(LearnerCheckpoint.policy_name == policy_name)
    if cursor is not None:
        query = query.where(LearnerCheckpoint.cursor == cursor)
    return session.exec(query.order_by(col(LearnerCheckpoint.id).desc()).limit(1)).first()


def latest_checkpoints(session: Session) -> list[LearnerCheckpoint]:
    """The newest checkpoint of every policy."""
    newest = (
        select(func.max(LearnerCheckpoint.id))
        .group_by(col(LearnerCheckpoint.policy_name))
        .scalar_subquery()
    )
    return list(
        session.exec(select(LearnerCheckpoint).where(col(LearnerCheckpoint.id).in_(newest))).all()
    )
