"""The learning store behaves alike in memory and on both databases: final rewards in sequence
order, checkpoints newest per policy, and the serving record's compare-and-set."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from campaign_db.audit import SqlAuditLog
from campaign_db.engine import session_scope
from campaign_db.learning import SqlLearningStore
from campaign_db.models import DecisionLog, Reward
from optimizer.core.policy_spec import PolicySpec
from optimizer.memory.learning import MemoryLearningStore
from optimizer.ports.audit import AuditEntry, AuditLog
from optimizer.ports.learning import (
    ANY_VERSION,
    Checkpoint,
    LearnableReward,
    LearningStore,
    ServingRecord,
)

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


@dataclass
class Stores:
    learning: LearningStore
    audit: AuditLog
    engine: Engine | None

    def add_final_reward(self, policy: str, *, reward: float = 1.0) -> int:
        """A final reward of a policy decision, as reward finalisation leaves it; its sequence."""
        ids = np.array([3, 5, 8], dtype=np.int32)
        if isinstance(self.learning, MemoryLearningStore):
            return self.learning.add_final_reward(
                LearnableReward(
                    sequence=0,
                    policy_name=policy,
                    context={"health_class": "C"},
                    action_ids=ids,
                    chosen_action_id=5,
                    probability=0.25,
                    reward=reward,
                )
            ).sequence
        assert self.engine is not None
        return add_sql_reward(self.engine, policy=policy, reward=reward, ids=ids)


def add_sql_reward(
    engine: Engine,
    *,
    policy: str,
    reward: float,
    ids: np.ndarray[Any, Any],
    reason: str = "policy",
    status: str = "final",
) -> int:
    with session_scope(engine, write=True) as session:
        sequence = session.exec(select(func.coalesce(func.max(Reward.sequence), 0))).one()
        decision = DecisionLog(
            request_id=uuid.uuid4().hex,
            customer_id="c1",
            trigger_key="health_c_to_d",
            policy_name=policy,
            reason=reason,
            context={"health_class": "C"},
            candidate_action_ids=ids,
            probabilities=np.full(len(ids), 1.0 / len(ids)),
            chosen_action_id=5,
            probability=0.25,
            seed=1,
            response={},
        )
        session.add(decision)
        session.flush()
        session.add(
            Reward(
                decision_id=decision.id,
                status=status,
                window_closes_at=T0,
                value=reward,
                sequence=sequence + 1 if status == "final" else None,
            )
        )
    return sequence + 1


@pytest.fixture
def stores(store_engine: Engine | None) -> Stores:
    if store_engine is None:
        memory = MemoryLearningStore()
        return Stores(memory, memory.audit, None)
    return Stores(SqlLearningStore(store_engine), SqlAuditLog(store_engine), store_engine)


def checkpoint(policy: str, cursor: int, *, published: str | None = None) -> Checkpoint:
    return Checkpoint(
        policy_name=policy,
        cursor=cursor,
        examples_learned=cursor,
        base_version=None,
        published_version=published,
        spec=PolicySpec(name=policy, epsilon=0.1),
        model=f"model {policy} {cursor}".encode(),
        created_at=T0 + timedelta(minutes=cursor),
    )


# --- final rewards -------------------------------------------------------------------------------


def test_final_rewards_come_in_sequence_order_after_the_cursor(stores: Stores) -> None:
    sequences = [stores.add_final_reward(p, reward=i) for i, p in enumerate("ababa")]
    found = stores.learning.final_rewards_after(cursor=sequences[1], limit=10)
    assert [r.sequence for r in found] == sequences[2:]
    assert [r.policy_name for r in found] == ["a", "b", "a"]
    assert [r.reward for r in found] == [2.0, 3.0, 4.0]
    first = found[0]
    assert list(first.action_ids) == [3, 5, 8]
    assert (first.chosen_action_id, first.probability) == (5, 0.25)
    assert first.context == {"health_class": "C"}


def test_final_rewards_stop_at_the_limit_and_at_through_and_keep_to_one_policy(
    stores: Stores,
) -> None:
    sequences = [stores.add_final_reward(p) for p in "ababab"]
    assert len(stores.learning.final_rewards_after(cursor=0, limit=4)) == 4
    of_a = stores.learning.final_rewards_after(cursor=0, limit=10, policy_name="a")
    assert [r.sequence for r in of_a] == sequences[0::2]
    through = stores.learning.final_rewards_after(cursor=0, limit=10, through=sequences[2])
    assert [r.sequence for r in through] == sequences[:3]
    assert stores.learning.final_rewards_after(cursor=sequences[-1], limit=10) == []


@pytest.mark.parametrize("store_engine", ["sqlite", "postgresql"], indirect=True)
def test_pending_rewards_and_decisions_of_no_policy_are_not_learnable(
    store_engine: Engine,
) -> None:
    ids = np.array([3, 5], dtype=np.int32)
    add_sql_reward(store_engine, policy="a", reward=1.0, ids=ids, status="pending")
    add_sql_reward(store_engine, policy="a", reward=1.0, ids=ids, reason="holdout")
    learned = add_sql_reward(store_engine, policy="a", reward=1.0, ids=ids)
    found = SqlLearningStore(store_engine).final_rewards_after(cursor=0, limit=10)
    assert [r.sequence for r in found] == [learned]


# --- checkpoints ---------------------------------------------------------------------------------


def test_saved_checkpoints_get_ids_and_the_newest_of_each_policy_wins(stores: Stores) -> None:
    first = stores.learning.save_checkpoints([checkpoint("a", 1), checkpoint("b", 1)])
    assert all(c.id is not None for c in first)
    assert first == [checkpoint("a", 1), checkpoint("b", 1)]
    stores.learning.save_checkpoints([checkpoint("a", 4)])
    newest = sorted(stores.learning.newest_checkpoints(), key=lambda c: c.policy_name)
    assert [(c.policy_name, c.cursor) for c in newest] == [("a", 4), ("b", 1)]
    assert newest[0] == checkpoint("a", 4)
    assert newest[0].spec == PolicySpec(name="a", epsilon=0.1)
    assert newest[0].model == b"model a 4"


def test_newest_checkpoint_of_a_policy_optionally_at_a_cursor(stores: Stores) -> None:
    assert stores.learning.newest_checkpoint("a") is None
    stores.learning.save_checkpoints([checkpoint("a", 1)])
    stores.learning.save_checkpoints([checkpoint("a", 4), checkpoint("b", 9)])
    assert [c.cursor for c in [stores.learning.newest_checkpoint("a")] if c] == [4]
    at_one = stores.learning.newest_checkpoint("a", cursor=1)
    assert [c.model for c in [at_one] if c] == [b"model a 1"]
    assert stores.learning.newest_checkpoint("a", cursor=9) is None


def test_marking_a_checkpoint_published_changes_only_that_one(stores: Stores) -> None:
    saved = stores.learning.save_checkpoints([checkpoint("a", 1), checkpoint("b", 1)])
    assert saved[0].id is not None
    stores.learning.mark_published(saved[0].id, version="7")
    newest = {c.policy_name: c for c in stores.learning.newest_checkpoints()}
    assert newest["a"].published_version == "7"
    assert newest["b"].published_version is None


# --- the serving record --------------------------------------------------------------------------


def served(stores: Stores) -> ServingRecord:
    found = stores.learning.serving("a")
    assert found is not None
    return found


def record(
    stores: Stores, version: str, *, only_replacing: str | Literal["any"] | None = ANY_VERSION
) -> bool:
    return stores.learning.record_serving(
        policy_name="a",
        version=version,
        cursor=int(version) * 10,
        source="promotion",
        actor="ops",
        now=T0,
        only_replacing=only_replacing,
    )


def test_recording_replaces_whatever_serves_by_default(stores: Stores) -> None:
    assert stores.learning.serving("a") is None
    assert record(stores, "1")
    assert record(stores, "2")
    serving = served(stores)
    assert (serving.version, serving.cursor, serving.source) == ("2", 20, "promotion")
    assert (serving.updated_by, serving.updated_at) == ("ops", T0)
    assert not serving.alias_synced


def test_compare_and_set_refuses_a_stale_expectation(stores: Stores) -> None:
    record(stores, "1")
    assert record(stores, "2", only_replacing="1")
    assert not record(stores, "3", only_replacing="1")  # "2" serves now, not "1"
    assert (served(stores).version, served(stores).cursor) == ("2", 20)


def test_a_first_record_is_made_only_where_none_exists(stores: Stores) -> None:
    assert not record(stores, "1", only_replacing="0")  # no record names "0"
    assert stores.learning.serving("a") is None
    assert record(stores, "1", only_replacing=None)
    assert not record(stores, "2", only_replacing=None)
    assert served(stores).version == "1"


def test_serving_records_come_by_policy_name(stores: Stores) -> None:
    for name in ("c", "a", "b"):
        stores.learning.record_serving(
            policy_name=name, version="1", cursor=0, source="online", actor="learner", now=T0
        )
    assert [r.policy_name for r in stores.learning.serving_records()] == ["a", "b", "c"]


def test_alias_marks_apply_only_to_the_version_that_serves(stores: Stores) -> None:
    record(stores, "2")
    stores.learning.mark_alias(policy_name="a", version="1", tampered_alias=None)
    assert not served(stores).alias_synced
    stores.learning.mark_alias(policy_name="a", version="2", tampered_alias=None)
    assert (served(stores).alias_synced, served(stores).tampered_alias) == (True, None)


def test_a_tampered_alias_is_marked_and_audited_together_until_the_sync_clears_it(
    stores: Stores,
) -> None:
    record(stores, "2")
    stores.learning.mark_alias(policy_name="a", version="2", tampered_alias=None)
    entry = AuditEntry(actor="registry", action="policy.alias_tampered", subject="a:5", at=T0)
    stores.learning.mark_alias(policy_name="a", version="2", tampered_alias="5", audit=entry)
    assert (served(stores).alias_synced, served(stores).tampered_alias) == (False, "5")
    assert [e.subject for e in stores.audit.entries(action="policy.alias_tampered")] == ["a:5"]

    record(stores, "3")  # a new version keeps the mark until its alias move succeeds
    assert served(stores).tampered_alias == "5"
    stores.learning.mark_alias(policy_name="a", version="3", tampered_alias=None)
    assert (served(stores).alias_synced, served(stores).tampered_alias) == (True, None)
