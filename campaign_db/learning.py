"""Queries of the learning aggregate: final rewards in sequence order, the learner's checkpoints,
and the serving record (which version each policy serves, and up to which reward it learned)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from campaign_db.models import DecisionLog, LearnerCheckpoint, Reward, ServingPolicy

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


def mark_published(session: Session, *, checkpoint_id: int, version: str) -> None:
    session.execute(
        update(LearnerCheckpoint)
        .where(col(LearnerCheckpoint.id) == checkpoint_id)
        .values(published_version=version)
    )


# --- the serving record -------------------------------------------------------------------------


def serving_policy(session: Session, *, policy_name: str) -> ServingPolicy | None:
    return session.get(ServingPolicy, policy_name)


def serving_policies(session: Session) -> list[ServingPolicy]:
    return list(session.exec(select(ServingPolicy).order_by(col(ServingPolicy.policy_name))).all())


def record_serving(
    session: Session,
    *,
    policy_name: str,
    version: str,
    cursor: int,
    source: str,
    actor: str,
    now: datetime,
    only_replacing: str | Literal["any"] | None = "any",
) -> bool:
    """Make `version` the one `policy_name` serves; returns whether it did.

    By default it replaces whatever serves (a promotion, a rollback). With `only_replacing` a
    version (or None: no record yet) it is a compare-and-set: the record changes only while it
    still names that version, so the learner's publication never overwrites a promotion that
    happened meanwhile.
    """
    values = {
        "version": version,
        "cursor": cursor,
        "source": source,
        "alias_synced": False,
        "updated_at": now,
        "updated_by": actor,
    }
    if only_replacing is None:
        return _insert_serving(session, policy_name=policy_name, values=values)
    statement = update(ServingPolicy).where(col(ServingPolicy.policy_name) == policy_name)
    if only_replacing != "any":
        statement = statement.where(col(ServingPolicy.version) == only_replacing)
    if session.execute(statement.values(**values)).rowcount == 1:  # type: ignore[attr-defined]
        return True
    return only_replacing == "any" and _insert_serving(
        session, policy_name=policy_name, values=values
    )


def _insert_serving(session: Session, *, policy_name: str, values: dict[str, Any]) -> bool:
    """Insert the first record of a policy; False when another transaction was first."""
    try:
        with session.begin_nested():
            session.add(ServingPolicy(policy_name=policy_name, **values))
    except IntegrityError:
        return False
    return True


def mark_alias(
    session: Session, *, policy_name: str, version: str, tampered_alias: str | None
) -> None:
    """After looking at the registry's alias: synced with `version`, or pointing elsewhere."""
    session.execute(
        update(ServingPolicy)
        .where(col(ServingPolicy.policy_name) == policy_name, col(ServingPolicy.version) == version)
        .values(alias_synced=tampered_alias is None, tampered_alias=tampered_alias)
    )
