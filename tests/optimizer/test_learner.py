"""The online learner: only final rewards, exactly once, resumable after a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from campaign_db.models import CustomerUpsert
from optimizer import customers
from optimizer.customers import ConsentUpdate
from optimizer.decisions import DecisionRequest, DecisionService
from optimizer.feedback import ConversionIn, DeliveryEventIn, record_conversion, record_event
from optimizer.learner import OnlineLearner, PoolPublisher
from optimizer.policy import BanditPolicy
from optimizer.rewards import finalize_due
from optimizer.serving import CatalogCache, CheckpointSource, PolicyPool, frame_policy_spec

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CHANNELS = ["email", "sms", "app_push", "app_inbox", "letter"]


def make_decisions(engine: Engine, n: int, *, seed: int = 0) -> DecisionService:
    """n churn decisions for fresh customers, each sent; about a third of them convert."""
    service = DecisionService(engine, catalog=CatalogCache(engine), policies=PolicyPool())
    rng = np.random.default_rng(seed)
    for i in range(n):
        customer = f"l{seed}-{i}"
        customers.upsert_customer(
            engine,
            customer_id=customer,
            data=CustomerUpsert(health_class="CD"[i % 2], language="en", time_zone="Europe/Berlin"),
        )
        for channel in CHANNELS:
            customers.set_consent(
                engine, customer_id=customer, channel=channel, update=ConsentUpdate(granted=True)
            )
        answer = service.decide(
            DecisionRequest(
                request_id=f"r{seed}-{i}",
                customer_id=customer,
                trigger="health_c_to_d",
                channels=CHANNELS,
                now=START + timedelta(minutes=i),
            )
        )
        if answer.contact and answer.action is not None:
            record_event(engine, decision_id=answer.decision_id, event=DeliveryEventIn(kind="sent"))
            if rng.random() < 0.35:
                record_conversion(
                    engine,
                    conversion=ConversionIn(
                        conversion_id=f"conv{seed}-{i}",
                        customer_id=customer,
                        type="stay",
                        value=10,
                        occurred_at=answer.action.send_time.send_at + timedelta(hours=5),
                    ),
                )
    return service


def learner_for(engine: Engine) -> OnlineLearner:
    catalog = CatalogCache(engine)
    return OnlineLearner(engine, catalog, publisher=PoolPublisher(PolicyPool()))


def test_pending_rewards_are_never_learned(loaded_engine: Engine) -> None:
    make_decisions(loaded_engine, 12)
    learner = learner_for(loaded_engine)
    assert learner.step().learned == 0
    finalize_due(loaded_engine, now=START + timedelta(days=3))  # windows (7 days) still open
    assert learner.step().learned == 0
    report = finalize_due(loaded_engine, now=START + timedelta(days=40))
    assert report.final > 0
    step = learner.step()
    assert step.learned > 0
    assert step.cursor == report.final


def test_learner_resumes_after_a_crash_without_learning_anything_twice(
    loaded_engine: Engine,
) -> None:
    make_decisions(loaded_engine, 30, seed=1)
    finalize_due(loaded_engine, now=START + timedelta(days=40))

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
    _, lines = CatalogCache(loaded_engine).current()
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
    finalize_due(loaded_engine, now=START + timedelta(days=40))
    pool = PolicyPool()
    learner = OnlineLearner(
        loaded_engine, CatalogCache(loaded_engine), publisher=PoolPublisher(pool)
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
    finalize_due(loaded_engine, now=START + timedelta(days=40))
    catalog = CatalogCache(loaded_engine)
    leader_pool = PolicyPool()
    learner = OnlineLearner(loaded_engine, catalog, publisher=PoolPublisher(leader_pool))
    other = PolicyPool(CheckpointSource(loaded_engine))  # another worker or replica
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


def test_a_promotion_is_followed_not_overwritten_by_the_next_checkpoint(
    loaded_engine: Engine, tmp_path: Path
) -> None:
    from optimizer.registry import CHAMPION, PolicyRegistry, RegistryPublisher

    registry = PolicyRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path)
    catalog = CatalogCache(loaded_engine)
    learner = OnlineLearner(
        loaded_engine, catalog, source=registry, publisher=RegistryPublisher(registry, catalog)
    )
    make_decisions(loaded_engine, 20, seed=3)
    finalize_due(loaded_engine, now=START + timedelta(days=40))
    learner.run_until_caught_up()
    online = learner.checkpoint()["churn_prevention"]

    # meanwhile a manager promotes another version, and the learner goes on learning
    snapshot, lines = catalog.current()
    frame = next(f for f in snapshot.frames if f.key == "churn_prevention")
    promoted = registry.register(
        BanditPolicy(frame_policy_spec(frame), name="churn_prevention"),
        action_lines={s: lines[a] for s, a in snapshot.actions.items()},
        floor_share=0.05,
        source="offline",
        alias=CHAMPION,
    )
    make_decisions(loaded_engine, 20, seed=4)
    finalize_due(loaded_engine, now=START + timedelta(days=40))
    learner.run_until_caught_up()

    assert learner.checkpoint() == {}
    assert registry.serving_version("churn_prevention") == promoted != online
    make_decisions(loaded_engine, 20, seed=5)
    finalize_due(loaded_engine, now=START + timedelta(days=40))
    learner.run_until_caught_up()
    after = learner.checkpoint()["churn_prevention"]
    assert registry.serving_version("churn_prevention") == after
    info = registry.version_info("churn_prevention", after)
    assert info.tags["campopt.parent_version"] == promoted
