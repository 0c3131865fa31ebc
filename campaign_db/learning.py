"""The learning aggregate in SQL: final rewards in sequence order, the learner's checkpoints,
and the serving record (which version each policy serves, and up to which reward it learned).

`SqlLearningStore` implements the optimizer's `LearningStore` port; the session-level queries
below serve it and the tests and tools that look at the tables directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from campaign_db.audit import add_audit
from campaign_db.engine import session_scope
from campaign_db.models import (
    DecisionLog,
    LearnerCheckpoint,
    RankingLog,
    Reward,
    ServingPolicy,
    SlotReward,
)
from optimizer.core.policy_spec import PolicySpec
from optimizer.ports.audit import AuditEntry
from optimizer.ports.learning import (
    ANY_VERSION,
    Checkpoint,
    LearnableReward,
    ServingRecord,
)

LEARNED_REASONS = ("policy", "policy_no_contact")


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
    pushed = [
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
    slots = final_slot_rewards_after(
        session, cursor=cursor, limit=limit, policy_name=policy_name, through=through
    )
    if not slots:
        return pushed
    return sorted(pushed + slots, key=lambda r: r.sequence)[:limit]


def final_slot_rewards_after(
    session: Session,
    *,
    cursor: int,
    limit: int,
    policy_name: str | None = None,
    through: int | None = None,
) -> list[LearnableReward]:
    """Final rewards of ranking slots, each learned as the choice among the candidates left for
    its slot, with the slot in its context (`optimizer.features.shared_line`)."""
    query = (
        select(  # type: ignore[call-overload]
            SlotReward.sequence,
            SlotReward.slot,
            RankingLog.policy_name,
            RankingLog.context,
            RankingLog.slots,
            SlotReward.value,
        )
        .join(RankingLog, col(RankingLog.id) == col(SlotReward.ranking_id))
        .where(
            SlotReward.status == "final",
            col(SlotReward.sequence) > cursor,
            col(RankingLog.policy_name).is_not(None),
        )
    )
    if policy_name is not None:
        query = query.where(RankingLog.policy_name == policy_name)
    if through is not None:
        query = query.where(col(SlotReward.sequence) <= through)
    rows = session.execute(query.order_by(col(SlotReward.sequence)).limit(limit)).all()
    out = []
    for seq, slot, name, context, slots, value in rows:
        pick = next((s for s in slots if int(s["slot"]) == int(slot)), None)
        if pick is None or pick.get("forced"):
            continue
        out.append(
            LearnableReward(
                sequence=int(seq),
                policy_name=str(name),
                context={**context, "slot": int(slot)},
                action_ids=np.asarray(pick["candidate_action_ids"], dtype=np.int32),
                chosen_action_id=int(pick["action_id"]),
                probability=float(pick["probability"]),
                reward=float(value),
            )
        )
    return out


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
    only_replacing: str | Literal["any"] | None = ANY_VERSION,
) -> bool:
    """See `ServingRecords.record_serving`."""
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
    if only_replacing != ANY_VERSION:
        statement = statement.where(col(ServingPolicy.version) == only_replacing)
    if session.execute(statement.values(**values)).rowcount == 1:  # type: ignore[attr-defined]
        return True
    return only_replacing == ANY_VERSION and _insert_serving(
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


# --- the store behind the port ------------------------------------------------------------------


def _checkpoint(row: LearnerCheckpoint) -> Checkpoint:
    return Checkpoint(
        id=row.id,
        policy_name=row.policy_name,
        cursor=row.cursor,
        examples_learned=row.examples_learned,
        base_version=row.base_version,
        published_version=row.published_version,
        spec=PolicySpec.model_validate(row.spec),
        model=row.model,
        created_at=row.created_at,
    )


def _record(row: ServingPolicy) -> ServingRecord:
    return ServingRecord(
        policy_name=row.policy_name,
        version=row.version,
        cursor=row.cursor,
        source=row.source,
        alias_synced=row.alias_synced,
        tampered_alias=row.tampered_alias,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


class SqlLearningStore:
    """The optimizer's `LearningStore`: each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def final_rewards_after(
        self,
        *,
        cursor: int,
        limit: int,
        policy_name: str | None = None,
        through: int | None = None,
    ) -> list[LearnableReward]:
        with session_scope(self.engine) as session:
            return final_rewards_after(
                session, cursor=cursor, limit=limit, policy_name=policy_name, through=through
            )

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        rows = [
            LearnerCheckpoint(
                policy_name=c.policy_name,
                cursor=c.cursor,
                examples_learned=c.examples_learned,
                base_version=c.base_version,
                published_version=c.published_version,
                spec=c.spec.model_dump(mode="json"),
                model=c.model,
                created_at=c.created_at,
            )
            for c in checkpoints
        ]
        with session_scope(self.engine, write=True) as session:
            session.add_all(rows)
            session.flush()
        return [_checkpoint(row) for row in rows]

    def newest_checkpoints(self) -> list[Checkpoint]:
        with session_scope(self.engine) as session:
            return [_checkpoint(row) for row in latest_checkpoints(session)]

    def newest_checkpoint(
        self, policy_name: str, *, cursor: int | None = None
    ) -> Checkpoint | None:
        with session_scope(self.engine) as session:
            row = newest_checkpoint(session, policy_name=policy_name, cursor=cursor)
            return None if row is None else _checkpoint(row)

    def mark_published(self, checkpoint_id: int, *, version: str) -> None:
        with session_scope(self.engine, write=True) as session:
            mark_published(session, checkpoint_id=checkpoint_id, version=version)

    def serving(self, policy_name: str) -> ServingRecord | None:
        with session_scope(self.engine) as session:
            row = serving_policy(session, policy_name=policy_name)
            return None if row is None else _record(row)

    def serving_records(self) -> list[ServingRecord]:
        with session_scope(self.engine) as session:
            return [_record(row) for row in serving_policies(session)]

    def record_serving(
        self,
        *,
        policy_name: str,
        version: str,
        cursor: int,
        source: str,
        actor: str,
        now: datetime,
        only_replacing: str | Literal["any"] | None = ANY_VERSION,
    ) -> bool:
        with session_scope(self.engine, write=True) as session:
            return record_serving(
                session,
                policy_name=policy_name,
                version=version,
                cursor=cursor,
                source=source,
                actor=actor,
                now=now,
                only_replacing=only_replacing,
            )

    def mark_alias(
        self,
        *,
        policy_name: str,
        version: str,
        tampered_alias: str | None,
        audit: AuditEntry | None = None,
    ) -> None:
        with session_scope(self.engine, write=True) as session:
            mark_alias(
                session, policy_name=policy_name, version=version, tampered_alias=tampered_alias
            )
            if audit is not None:
                add_audit(session, audit)
