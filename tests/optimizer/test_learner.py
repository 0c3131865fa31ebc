"""The online learner: only final rewards, exactly once, resumable after a crash."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.audit import SqlAuditLog
from campaign_db.catalog import SqlCatalogReader
from campaign_db.customers import SqlCustomerStore
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.learning import SqlLearningStore
from campaign_db.models import LearnerCheckpoint
from campaign_db.rewards import SqlRewardStore
from optimizer import customers
from optimizer.core.decision import DecisionAsk
from optimizer.customers import ConsentUpdate
from optimizer.decisions import DecisionService
from optimizer.feedback import (
    ConversionReport,
    EventReport,
    record_conversion,
    record_event,
)
from optimizer.learner import OnlineLearner, PoolPublisher
from optimizer.policy import BanditPolicy
from optimizer.ports.customers import Profile
from optimizer.ports.learning import LearnableRewards
from optimizer.publishing import (
    ApprovedSource,
    RegistryPublisher,
    make_serving,
    reconcile_aliases,
    served_version,
    serving_states,
)
from optimizer.registry import CHAMPION, PolicyRegistry
from optimizer.rewards import finalize_due
from optimizer.serving import (
    CatalogCache,
    CheckpointSource,
    PolicyPool,
    ServedVersion,
)

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CHANNELS = ["email", "sms", "app_push", "app_inbox", "letter"]


def make_decisions(engine: Engine, n: int, *, seed: int = 0) -> None:
    """n churn decisions for fresh customers, each sent; about a third of them convert."""
    rng = np.random.default_rng(seed)
    with DecisionService(
        SqlDecisionStore(engine),
        catalog=CatalogCache(SqlCatalogReader(engine)),
        policies=PolicyPool(),
    ) as service:
        for i in range(n):
            customer = f"l{seed}-{i}"
            customers.upsert_customer(
                SqlCustomerStore(engine),
                customer_id=customer,
                data=Profile(health_class="CD"[i % 2], language="en", time_zone="Europe/Berlin"),
            )
            for channel in CHANNELS:
                customers.set_consent(
                    SqlCustomerStore(engine),
                    customer_id=customer,
                    channel=channel,
                    update=ConsentUpdate(granted=True),
                )
            answer = service.decide(
                DecisionAsk(
                    request_id=f"r{seed}-{i}",
                    customer_id=customer,
                    trigger="health_c_to_d",
                    channels=CHANNELS,
                    now=START + timedelta(minutes=i),
                )
            )
            if answer.contact and answer.action is not None:
                record_event(
                    SqlFeedbackStore(engine),
                    decision_id=answer.decision_id,
                    event=EventReport(kind="sent"),
                )
                if rng.random() < 0.35:
                    record_conversion(
                        SqlFeedbackStore(engine),
                        conversion=ConversionReport(
                            conversion_id=f"conv{seed}-{i}",
                            customer_id=customer,
                            kind="stay",
                            value=10,
                            occurred_at=answer.action.send_time.send_at + timedelta(hours=5),
                        ),
                    )


def learner_for(engine: Engine) -> OnlineLearner:
    catalog = CatalogCache(SqlCatalogReader(engine))
    return OnlineLearner(SqlLearningStore(engine), catalog, publisher=PoolPublisher(PolicyPool()))


def test_pending_rewards_are_never_learned(loaded_engine: Engine) -> None:
    make_decisions(loaded_engine, 12)
    learner = learner_for(loaded_engine)
    assert learner.step().learned == 0
    finalize_due(
        SqlRewardStore(loaded_engine), now=START + timedelta(days=3)
    )  # windows (7 days) still open
    assert learner.step().learned == 0
    report = finalize_due(SqlRewardStore(loaded_engine), now=START + timedelta(days=40))
    assert report.final > 0
    step = learner.step()
    assert step.learned > 0
    assert step.cursor == report.final


def test_learner_resumes_after_a_crash_without_learning_anything_twice(
    loaded_engine: Engine,
) -> None:
    make_decisions(loaded_engine, 30, seed=1)
    finalize_due(SqlRewardStore(loaded_engine), now=START + timedelta(days=40))

    reference = learner_for(loaded_engine)
    reference.run_until_caught_up()

    first = learner_for(loaded_engine)
    first.step(limit=10)
    first.checkpoint()
    first.step(limit=7)  # learned, never checkpointed: lost in the crash
    del first

    resumed = learner_for(loaded_engine)
    resumed.load()
    assert resumed.cursor > 0
    resumed.run_until_caught_up()
    assert resumed.cursor == reference.cursor
    _, lines = CatalogCache(SqlCatalogReader(loaded_engine)).current()
    actions = [lines[i] for i in range(1, 60)]
    for name, lineage in reference.lineages.items():
        mine = resumed.lineages[name].policy
        assert mine.examples_learned == lineage.policy.examples_learned
        for hc in "CD":
            shared = f"shared |c hc_{hc} lang_en usage:0.2 |t health_c_to_d |h h10 wd0 we0"
            assert np.array_equal(
                mine.model.predict(shared, actions), lineage.policy.model.predict(shared, actions)
            )


def test_checkpoint_publishes_new_weights_to_serving(loaded_engine: Engine) -> None:
    make_decisions(loaded_engine, 16, seed=2)
    finalize_due(SqlRewardStore(loaded_engine), now=START + timedelta(days=40))
    pool = PolicyPool()
    learner = OnlineLearner(
        SqlLearningStore(loaded_engine),
        CatalogCache(SqlCatalogReader(loaded_engine)),
        publisher=PoolPublisher(pool),
    )
    learner.run_until_caught_up()
    published = learner.checkpoint()
    assert published == {"churn_prevention": f"online-{learner.cursor}"}
    assert pool.loaded()["churn_prevention"] == f"online-{learner.cursor}"
    assert learner.checkpoint() == {}  # nothing new to publish


def test_without_a_registry_other_processes_serve_the_checkpointed_weights(
    loaded_engine: Engine,
) -> None:
    make_decisions(loaded_engine, 16, seed=3)
    finalize_due(SqlRewardStore(loaded_engine), now=START + timedelta(days=40))
    catalog = CatalogCache(SqlCatalogReader(loaded_engine))
    leader_pool = PolicyPool()
    store = SqlLearningStore(loaded_engine)
    learner = OnlineLearner(store, catalog, publisher=PoolPublisher(leader_pool))
    other = PolicyPool(CheckpointSource(store))  # another worker or replica
    snapshot, _ = catalog.current()
    other.want(list(snapshot.frames))
    assert other.refresh() == []  # nothing learned yet: it stays untrained

    learner.run_until_caught_up()
    learner.checkpoint()

    assert other.refresh() == ["churn_prevention"]
    assert other.loaded()["churn_prevention"] == leader_pool.loaded()["churn_prevention"]
    frame = next(f for f in snapshot.frames if f.key == "churn_prevention")
    _, lines = catalog.current()
    actions = [lines[i] for i in range(1, 30)]
    shared = "shared |c hc_D lang_en usage:0.2 |t health_c_to_d |h h10 wd0 we0"
    assert np.array_equal(
        other.policy_for(frame).model.predict(shared, actions),
        leader_pool.policy_for(frame).model.predict(shared, actions),
    )
    assert other.refresh() == []


def learn_new_rewards(engine: Engine, learner: OnlineLearner, n: int, *, seed: int) -> None:
    """n more decisions whose rewards become final, learned."""
    make_decisions(engine, n, seed=seed)
    finalize_due(SqlRewardStore(engine), now=START + timedelta(days=40))
    learner.run_until_caught_up()


def learnable_count(rewards: LearnableRewards, name: str, through: int) -> int:
    """How many final rewards of the policy a model at cursor `through` must have learned."""
    return len(
        rewards.final_rewards_after(cursor=0, limit=10**9, policy_name=name, through=through)
    )


def registry_learner(
    engine: Engine, tmp_path: Path
) -> tuple[OnlineLearner, PolicyRegistry, CatalogCache]:
    registry = PolicyRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path)
    catalog = CatalogCache(SqlCatalogReader(engine))
    store = SqlLearningStore(engine)
    learner = OnlineLearner(
        store, catalog, source=registry, publisher=RegistryPublisher(store, registry, catalog)
    )
    return learner, registry, catalog


def register_untrained(registry: PolicyRegistry, catalog: CatalogCache) -> str:
    """An offline candidate that learned nothing: its training cut-off is 0."""
    snapshot, lines = catalog.current()
    frame = next(f for f in snapshot.frames if f.key == "churn_prevention")
    return registry.register(
        BanditPolicy(frame.spec.policy_spec(), name="churn_prevention"),
        action_lines={s: lines[a] for s, a in snapshot.actions.items()},
        floor_share=0.05,
        source="offline",
        tags={"cursor": "0"},
    )


def promote_untrained(engine: Engine, registry: PolicyRegistry, version: str) -> None:
    """A manager's promotion of `register_untrained`'s version (cut-off 0)."""
    make_serving(
        SqlLearningStore(engine),
        registry,
        name="churn_prevention",
        version=version,
        cursor=0,
        source="promotion",
        actor="test",
    )


def test_a_promotion_is_followed_from_its_cut_off_not_overwritten(
    loaded_engine: Engine, tmp_path: Path
) -> None:
    learner, registry, catalog = registry_learner(loaded_engine, tmp_path)
    learn_new_rewards(loaded_engine, learner, 20, seed=3)
    online = learner.checkpoint()["churn_prevention"]
    assert served_version(SqlLearningStore(loaded_engine), "churn_prevention") == ServedVersion(
        online, learner.cursor
    )

    # meanwhile a manager promotes a version trained on nothing, and the learner goes on
    promoted = register_untrained(registry, catalog)
    promote_untrained(loaded_engine, registry, promoted)
    learn_new_rewards(loaded_engine, learner, 20, seed=4)

    # the learner takes the promoted model over and replays every reward since its cut-off
    after = learner.checkpoint()["churn_prevention"]
    assert after not in (online, promoted)
    assert registry.serving_version("churn_prevention") == after
    assert registry.version_info("churn_prevention", after).tags["campopt.parent_version"] == (
        promoted
    )
    lineage = learner.lineages["churn_prevention"]
    assert lineage.policy.examples_learned == learnable_count(
        learner.store, "churn_prevention", learner.cursor
    )


def test_a_publication_never_overwrites_a_promotion_made_meanwhile(
    loaded_engine: Engine, tmp_path: Path
) -> None:
    learner, registry, catalog = registry_learner(loaded_engine, tmp_path)
    learn_new_rewards(loaded_engine, learner, 12, seed=6)
    first = learner.checkpoint()["churn_prevention"]
    learn_new_rewards(loaded_engine, learner, 12, seed=7)
    promoted = register_untrained(registry, catalog)
    learner.follow_promotions = lambda: []  # type: ignore[method-assign]  # promoted just after
    promote_untrained(loaded_engine, registry, promoted)

    assert learner.checkpoint() == {}
    assert served_version(SqlLearningStore(loaded_engine), "churn_prevention") == ServedVersion(
        promoted, 0
    )
    assert registry.serving_version("churn_prevention") == promoted != first


def test_a_champion_alias_moved_outside_the_service_is_ignored_and_audited(
    loaded_engine: Engine, tmp_path: Path
) -> None:
    learner, registry, catalog = registry_learner(loaded_engine, tmp_path)
    learn_new_rewards(loaded_engine, learner, 12, seed=8)
    online = learner.checkpoint()["churn_prevention"]
    rejected = register_untrained(registry, catalog)
    registry.set_alias("churn_prevention", CHAMPION, rejected)  # someone, in the MLflow UI

    states = reconcile_aliases(SqlLearningStore(loaded_engine), registry)
    assert [(s.serving, s.alias, s.tampered) for s in states] == [(online, rejected, True)]
    assert (
        ApprovedSource(SqlLearningStore(loaded_engine), registry).serving_version(
            "churn_prevention"
        )
        == online
    )
    assert (
        serving_states(SqlLearningStore(loaded_engine))["churn_prevention"].tampered_alias
        == rejected
    )
    assert learner.follow_promotions() == []
    reconcile_aliases(
        SqlLearningStore(loaded_engine), registry
    )  # audited once per move, not at every look
    entries = SqlAuditLog(loaded_engine).entries(action="policy.alias_tampered")
    assert [e.subject for e in entries] == [f"churn_prevention:{rejected}"]

    # the service's next publication moves the alias back and the mark goes
    learn_new_rewards(loaded_engine, learner, 12, seed=9)
    again = learner.checkpoint()["churn_prevention"]
    assert registry.serving_version("churn_prevention") == again
    assert (
        serving_states(SqlLearningStore(loaded_engine))["churn_prevention"].tampered_alias is None
    )


def test_an_interrupted_alias_move_is_finished_not_taken_for_tampering(
    loaded_engine: Engine, tmp_path: Path
) -> None:
    learner, registry, catalog = registry_learner(loaded_engine, tmp_path)
    learn_new_rewards(loaded_engine, learner, 12, seed=10)
    online = learner.checkpoint()["churn_prevention"]
    promoted = register_untrained(registry, catalog)
    SqlLearningStore(loaded_engine).record_serving(  # crashed before the alias moved
        policy_name="churn_prevention",
        version=promoted,
        cursor=0,
        source="promotion",
        actor="test",
        now=START,
    )
    assert registry.serving_version("churn_prevention") == online

    states = reconcile_aliases(SqlLearningStore(loaded_engine), registry)
    assert [(s.serving, s.alias, s.tampered) for s in states] == [(promoted, promoted, False)]
    assert registry.serving_version("churn_prevention") == promoted
    assert SqlAuditLog(loaded_engine).entries(action="policy.alias_tampered") == []


def test_a_checkpoint_taken_during_a_learn_batch_saves_a_consistent_model(
    loaded_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler runs learning and checkpoints as separate jobs, in separate threads."""
    make_decisions(loaded_engine, 30, seed=11)
    finalize_due(SqlRewardStore(loaded_engine), now=START + timedelta(days=40))
    learner = learner_for(loaded_engine)
    learn = BanditPolicy.learn
    checkpoints: list[threading.Thread] = []

    def checkpoint_meanwhile() -> None:
        checkpoints.append(threading.Thread(target=learner.checkpoint))
        checkpoints[-1].start()
        time.sleep(0.3)  # the checkpoint runs while this learn call is under way

    def learn_with_checkpoints(self: BanditPolicy, *args: Any, **kwargs: Any) -> None:
        if self.examples_learned == 2:
            checkpoint_meanwhile()
        learn(self, *args, **kwargs)
        if self.examples_learned == 5:
            checkpoint_meanwhile()

    monkeypatch.setattr(BanditPolicy, "learn", learn_with_checkpoints)
    learner.step()
    for thread in checkpoints:
        thread.join()
    with session_scope(loaded_engine) as session:
        rows = list(session.exec(select(LearnerCheckpoint)).all())
    assert len(checkpoints) == 2
    assert rows
    for row in rows:
        assert row.examples_learned == learnable_count(
            SqlLearningStore(loaded_engine), row.policy_name, row.cursor
        )
