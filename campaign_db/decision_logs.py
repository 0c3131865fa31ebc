"""The decision log read back in bulk, behind the optimizer's `DecisionLogReader` port."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, DecisionFrame, DecisionLog, Reward, chunks, table_of
from optimizer.ports.decision_logs import (
    POLICY_REASONS,
    EvaluationRow,
    EvaluationRows,
    LogFilters,
    LoggedContact,
    LoggedDecision,
)


def decisions_by_id(session: Session, *, ids: Sequence[uuid.UUID]) -> list[LoggedDecision]:
    found: list[LoggedDecision] = []
    for batch in chunks(ids):
        rows = session.exec(select(DecisionLog).where(col(DecisionLog.id).in_(batch))).all()
        found.extend(_logged(row) for row in rows)
    order = {decision_id: i for i, decision_id in enumerate(ids)}
    return sorted(found, key=lambda d: order[d.id])


def _logged(row: DecisionLog) -> LoggedDecision:
    return LoggedDecision(
        id=row.id,
        created_at=row.created_at,
        customer_id=row.customer_id,
        trigger_key=row.trigger_key,
        frame_key=row.frame_key,
        reason=row.reason,
        context=row.context,
        candidate_action_ids=row.candidate_action_ids,
        probabilities=row.probabilities,
        chosen_action_id=row.chosen_action_id,
        probability=row.probability,
        send_at=row.send_at,
        policy_version=row.policy_version,
    )


def all_contacts(session: Session) -> list[LoggedContact]:
    contacts = table_of(ContactHistory)
    rows = session.execute(
        contacts.select().with_only_columns(
            contacts.c.customer_id,
            contacts.c.frame_key,
            contacts.c.channel_key,
            contacts.c.send_at,
            contacts.c.created_at,
            contacts.c.status,
        )
    ).all()
    return [LoggedContact(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def evaluation_rows(session: Session, *, filters: LogFilters) -> list[EvaluationRow]:
    """Policy decisions with final rewards, oldest first (holdout and no-candidate decisions,
    pending and void rewards are left out: they say nothing about a policy)."""
    logs, rewards = table_of(DecisionLog), table_of(Reward)
    statement = (
        logs.select()
        .with_only_columns(
            logs.c.id,
            logs.c.created_at,
            logs.c.frame_key,
            logs.c.trigger_key,
            logs.c.policy_version,
            logs.c.context,
            logs.c.candidate_action_ids,
            logs.c.probabilities,
            logs.c.chosen_action_id,
            logs.c.probability,
            rewards.c.value,
            rewards.c.unsubscribed,
            rewards.c.complained,
            rewards.c.sequence,
        )
        .select_from(logs.join(rewards, rewards.c.decision_id == logs.c.id))
        .where(rewards.c.status == "final", logs.c.reason.in_(POLICY_REASONS))
        .order_by(logs.c.created_at, logs.c.id)
    )
    if filters.since is not None:
        statement = statement.where(logs.c.created_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(logs.c.created_at < filters.until)
    if filters.frame_key is not None:
        statement = statement.where(logs.c.frame_key == filters.frame_key)
    if filters.policy_version is not None:
        statement = statement.where(logs.c.policy_version == filters.policy_version)
    return [EvaluationRow(*row) for row in session.execute(statement)]


def reward_ranges(session: Session, *, frame_keys: set[str]) -> list[tuple[float, float]]:
    """The reward range of every version of these frames that declares one."""
    ranges = session.exec(
        select(DecisionFrame.reward_range).where(col(DecisionFrame.key).in_(frame_keys))
    ).all()
    return [(float(r[0]), float(r[1])) for r in ranges if r]


class SqlDecisionLogs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def evaluation_rows(self, filters: LogFilters) -> EvaluationRows:
        with session_scope(self.engine) as session:
            rows = evaluation_rows(session, filters=filters)
            ranges = reward_ranges(session, frame_keys={r.frame_key for r in rows})
        return EvaluationRows(rows=rows, reward_ranges=ranges)

    def decisions_by_id(self, ids: Sequence[uuid.UUID]) -> list[LoggedDecision]:
        with session_scope(self.engine) as session:
            return decisions_by_id(session, ids=list(ids))

    def contacts(self) -> list[LoggedContact]:
        with session_scope(self.engine) as session:
            return all_contacts(session)
