"""The decision log reads back alike in memory and on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, Customer, DecisionFrame, DecisionLog, Reward
from optimizer.memory.decision_logs import MemoryDecisionLogs
from optimizer.ports.decision_logs import (
    DecisionLogReader,
    LogFilters,
    LoggedContact,
    LoggedDecision,
)

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


class Filler:
    """Logs decisions, rewards, frames and contacts where the store under test reads them."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine
        self.memory = MemoryDecisionLogs()
        self.store: DecisionLogReader = self.memory if engine is None else SqlDecisionLogs(engine)

    def decision(
        self,
        minute: int,
        *,
        reason: str = "policy",
        frame: str = "churn",
        version: str = "3",
        reward: float | None = 1.0,
        status: str = "final",
        sequence: int | None = None,
    ) -> uuid.UUID:
        policy = reason in ("policy", "policy_no_contact")
        decision = LoggedDecision(
            id=uuid.uuid4(),
            created_at=T0 + timedelta(minutes=minute),
            customer_id=f"c{minute}",
            trigger_key="health_c_to_d",
            frame_key=frame,
            reason=reason,
            context={"health_class": "C", "minute": minute},
            candidate_action_ids=np.array([1, 2, 3], dtype=np.int32) if policy else None,
            probabilities=np.array([0.2, 0.3, 0.5]) if policy else None,
            chosen_action_id=2 if policy else None,
            probability=0.3 if policy else None,
            send_at=T0 + timedelta(minutes=minute, hours=1) if reason == "policy" else None,
            policy_version=version,
        )
        if self.engine is None:
            self.memory.log(decision)
            if status:
                self.memory.reward(decision.id, value=reward, status=status, sequence=sequence)
            return decision.id
        with session_scope(self.engine, write=True) as session:
            session.add(
                DecisionLog(
                    id=decision.id,
                    request_id=str(decision.id),
                    created_at=decision.created_at,
                    customer_id=decision.customer_id,
                    trigger_key=decision.trigger_key,
                    frame_key=decision.frame_key,
                    policy_version=version,
                    reason=reason,
                    context=dict(decision.context),
                    candidate_action_ids=decision.candidate_action_ids,
                    probabilities=decision.probabilities,
                    chosen_action_id=decision.chosen_action_id,
                    probability=decision.probability,
                    seed=minute,
                    send_at=decision.send_at,
                )
            )
            session.flush()
            if status:
                session.add(
                    Reward(
                        decision_id=decision.id,
                        status=status,
                        window_closes_at=decision.created_at + timedelta(days=14),
                        value=reward,
                        sequence=sequence,
                    )
                )
        return decision.id

    def frame(self, key: str, version: int, reward_range: tuple[float, float] | None) -> None:
        if self.engine is None:
            if reward_range is not None:
                self.memory.declare_reward_range(key, version, *reward_range)
            return
        with session_scope(self.engine, write=True) as session:
            session.add(
                DecisionFrame(
                    key=key,
                    name=key,
                    version=version,
                    content_hash=f"{key}-{version}",
                    reward_range=list(reward_range or []),
                )
            )

    def contact(self, contact: LoggedContact) -> None:
        if self.engine is None:
            self.memory.add_contact(contact)
            return
        with session_scope(self.engine, write=True) as session:
            session.add(Customer(id=contact.customer_id))
            session.flush()
            session.add(
                ContactHistory(
                    customer_id=contact.customer_id,
                    frame_key=contact.frame_key,
                    channel_key=contact.channel_key,
                    send_at=contact.send_at,
                    created_at=contact.reserved_at,
                    status=contact.status,
                )
            )


@pytest.fixture
def fill(store_engine: Engine | None) -> Filler:
    return Filler(store_engine)


def test_evaluation_rows_are_policy_decisions_with_final_rewards_oldest_first(
    fill: Filler,
) -> None:
    late = fill.decision(30, sequence=2)
    early = fill.decision(10, sequence=1, reward=0.0)
    no_candidates = fill.decision(15, reason="policy_no_contact", reward=0.5, sequence=3)
    fill.decision(20, reason="holdout", sequence=4)
    fill.decision(25, status="pending", reward=None)
    fill.decision(26, status="void", reward=None)
    fill.decision(27, status="")

    found = fill.store.evaluation_rows(LogFilters())

    assert [r.decision_id for r in found.rows] == [early, no_candidates, late]
    first = found.rows[0]
    assert first.created_at == T0 + timedelta(minutes=10)
    assert (first.reward, first.reward_sequence, first.probability) == (0.0, 1, 0.3)
    assert first.chosen_action_id == 2
    assert first.candidate_action_ids.tolist() == [1, 2, 3]
    assert np.allclose(first.probabilities, [0.2, 0.3, 0.5])
    assert first.context["minute"] == 10
    assert (first.unsubscribed, first.complained) == (False, False)


def test_evaluation_rows_filter_by_time_frame_and_version(fill: Filler) -> None:
    a = fill.decision(0, frame="churn", version="1")
    b = fill.decision(10, frame="upsell", version="1")
    c = fill.decision(20, frame="churn", version="2")

    def ids(filters: LogFilters) -> list[uuid.UUID]:
        return [r.decision_id for r in fill.store.evaluation_rows(filters).rows]

    assert ids(LogFilters(since=T0 + timedelta(minutes=10))) == [b, c]
    assert ids(LogFilters(until=T0 + timedelta(minutes=10))) == [a]
    assert ids(LogFilters(frame_key="churn")) == [a, c]
    assert ids(LogFilters(policy_version="1")) == [a, b]
    assert ids(LogFilters(frame_key="churn", policy_version="1")) == [a]
    assert ids(LogFilters(frame_key="nothing")) == []


def test_reward_ranges_are_those_of_the_frames_read(fill: Filler) -> None:
    fill.frame("churn", 1, (0.0, 1.0))
    fill.frame("churn", 2, (-5.0, 60.0))
    fill.frame("upsell", 1, (0.0, 500.0))
    fill.frame("winback", 1, None)
    fill.decision(0, frame="churn")
    fill.decision(1, frame="winback")

    found = fill.store.evaluation_rows(LogFilters())

    assert sorted(found.reward_ranges) == [(-5.0, 60.0), (0.0, 1.0)]
    assert fill.store.evaluation_rows(LogFilters(frame_key="winback")).reward_ranges == []


def test_decisions_come_back_by_id_in_the_order_asked(fill: Filler) -> None:
    ids = [fill.decision(i, reason=r) for i, r in enumerate(["policy", "holdout", "policy"])]
    asked = [ids[2], uuid.uuid4(), ids[0], ids[1]]

    found = fill.store.decisions_by_id(asked)

    assert [d.id for d in found] == [ids[2], ids[0], ids[1]]
    holdout = found[2]
    assert holdout.reason == "holdout"
    assert holdout.candidate_action_ids is None
    assert holdout.chosen_action_id is None
    assert found[0].send_at == T0 + timedelta(minutes=2, hours=1)
    assert found[0].policy_version == "3"
    assert found[0].candidate_action_ids is not None
    assert found[0].candidate_action_ids.tolist() == [1, 2, 3]
    assert fill.store.decisions_by_id([]) == []


def test_decisions_by_id_reads_more_than_one_batch(fill: Filler) -> None:
    ids = [fill.decision(i, status="") for i in range(620)]
    wanted = list(reversed(ids))
    assert [d.id for d in fill.store.decisions_by_id(wanted)] == wanted


def test_contacts_come_back_whole(fill: Filler) -> None:
    sent = LoggedContact(
        "c1", "churn", "sms", T0 + timedelta(hours=2), T0 + timedelta(minutes=1), "sent"
    )
    reserved = LoggedContact("c2", "upsell", "email", T0 + timedelta(days=1), T0, "reserved")
    fill.contact(sent)
    fill.contact(reserved)

    assert sorted(fill.store.contacts()) == [sent, reserved]
