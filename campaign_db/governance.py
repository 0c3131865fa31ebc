"""Frame states, the guardrails' window queries and frame versions behind the optimizer's
`GovernanceStore` port."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, case, func
from sqlmodel import Session, SQLModel, col, select

from campaign_db.audit import add_audit
from campaign_db.catalog import approve_frame, reject_frame
from campaign_db.engine import session_scope
from campaign_db.models import Action, DecisionFrame, DecisionLog, FrameState, Offer, Reward
from optimizer.core.catalog import FrameSpec
from optimizer.core.values import DecisionReason, FrameStatus
from optimizer.ports import governance as port
from optimizer.ports.audit import AuditEntry


def _table(model: type[SQLModel]) -> Table:
    table = getattr(model, "__table__")  # noqa: B009 (SQLModel does not type __table__)
    assert isinstance(table, Table)
    return table


_logs, _rewards, _actions, _offers = (_table(m) for m in (DecisionLog, Reward, Action, Offer))


def frame_states(session: Session) -> dict[str, port.FrameState]:
    return {
        row.frame_key: port.FrameState(
            frame_key=row.frame_key,
            mode=row.mode,
            reason=row.reason,
            changed_at=row.changed_at,
            changed_by=row.changed_by,
            metrics=row.metrics,
        )
        for row in session.exec(select(FrameState)).all()
    }


def set_frame_state(session: Session, state: port.FrameState) -> None:
    row = session.get(FrameState, state.frame_key) or FrameState(frame_key=state.frame_key)
    row.mode = state.mode
    row.reason = state.reason
    row.changed_at = state.changed_at
    row.changed_by = state.changed_by
    row.metrics = None if state.metrics is None else dict(state.metrics)
    session.add(row)


def _version_info(row: DecisionFrame) -> port.FrameVersionInfo:
    return port.FrameVersionInfo(
        key=row.key,
        name=row.name,
        version=row.version,
        status=FrameStatus(row.status),
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        created_at=row.created_at,
    )


def frame_versions(session: Session, *, key: str | None = None) -> list[port.FrameVersionInfo]:
    statement = select(DecisionFrame).order_by(col(DecisionFrame.key), col(DecisionFrame.version))
    if key is not None:
        statement = statement.where(DecisionFrame.key == key)
    return [_version_info(row) for row in session.exec(statement).all()]


def frame_window_counts(
    session: Session, *, frame_key: str, since: datetime, until: datetime
) -> port.WindowCounts:
    policy = _logs.c.reason == DecisionReason.policy.value
    holdout = _logs.c.reason == DecisionReason.holdout.value
    converted = _rewards.c.conversions > 0

    def total(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = session.execute(
        _logs.select()
        .with_only_columns(
            total(policy),
            total(policy & _rewards.c.unsubscribed),
            total(policy & _rewards.c.complained),
            total(policy & converted),
            total(holdout),
            total(holdout & converted),
        )
        .select_from(_logs.join(_rewards, _rewards.c.decision_id == _logs.c.id))
        .where(
            _logs.c.frame_key == frame_key,
            _logs.c.created_at >= since,
            _logs.c.created_at < until,
        )
    ).one()
    return port.WindowCounts(*(int(v) for v in row))


def frame_window_spend(
    session: Session, *, frame_key: str, since: datetime, until: datetime
) -> port.WindowSpend:
    row = session.execute(
        _logs.select()
        .with_only_columns(func.count(), func.coalesce(func.sum(_offers.c.cost), 0.0))
        .select_from(
            _logs.outerjoin(_actions, _actions.c.id == _logs.c.chosen_action_id).outerjoin(
                _offers, _offers.c.key == _actions.c.offer_key
            )
        )
        .where(
            _logs.c.frame_key == frame_key,
            _logs.c.reason.in_(
                (DecisionReason.policy.value, DecisionReason.policy_no_contact.value)
            ),
            _logs.c.created_at >= since,
            _logs.c.created_at < until,
        )
    ).one()
    return port.WindowSpend(decisions=int(row[0]), offer_cost=float(row[1]))


class SqlGovernanceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def states(self) -> dict[str, port.FrameState]:
        with session_scope(self.engine) as session:
            return frame_states(session)

    def set_state(self, state: port.FrameState, *, audit: AuditEntry | None = None) -> None:
        with session_scope(self.engine, write=True) as session:
            set_frame_state(session, state)
            if audit is not None:
                add_audit(session, audit)

    def window_counts(
        self, *, frame_key: str, since: datetime, until: datetime
    ) -> port.WindowCounts:
        with session_scope(self.engine) as session:
            return frame_window_counts(session, frame_key=frame_key, since=since, until=until)

    def window_spend(self, *, frame_key: str, since: datetime, until: datetime) -> port.WindowSpend:
        with session_scope(self.engine) as session:
            return frame_window_spend(session, frame_key=frame_key, since=since, until=until)

    def versions(self, *, key: str | None = None) -> list[port.FrameVersionInfo]:
        with session_scope(self.engine) as session:
            return frame_versions(session, key=key)

    def spec(self, *, key: str, version: int) -> FrameSpec | None:
        with session_scope(self.engine) as session:
            row = session.exec(
                select(DecisionFrame).where(
                    DecisionFrame.key == key, DecisionFrame.version == version
                )
            ).first()
            return None if row is None else FrameSpec.model_validate(row.spec)

    def approve(
        self,
        *,
        key: str,
        version: int,
        approver: str,
        now: datetime,
        reason: str = "",
        via: str = "api",
    ) -> port.FrameVersionInfo:
        with session_scope(self.engine, write=True) as session:
            row = approve_frame(
                session,
                key=key,
                version=version,
                approver=approver,
                now=now,
                reason=reason,
                via=via,
            )
            return _version_info(row)

    def reject(
        self, *, key: str, version: int, actor: str, now: datetime, reason: str, via: str = "api"
    ) -> port.FrameVersionInfo:
        with session_scope(self.engine, write=True) as session:
            row = reject_frame(
                session, key=key, version=version, actor=actor, now=now, reason=reason, via=via
            )
            return _version_info(row)
