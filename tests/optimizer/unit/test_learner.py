"""The online learner on the in-memory stores: each final reward learned once, checkpoints that
resume at their cursor, and promotions taken over with a replay from their cut-off."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.core.catalog import CatalogSpec
from optimizer.core.values import utcnow
from optimizer.learner import OnlineLearner, PoolPublisher
from optimizer.memory.audit import MemoryAuditLog
from optimizer.memory.catalog import MemoryCatalog
from optimizer.memory.learning import MemoryLearningStore
from optimizer.policy import BanditPolicy, StoredModel
from optimizer.ports.learning import LearnableReward, ServingRecords
from optimizer.publishing import served_version
from optimizer.serving import CatalogCache, CheckpointSource, PolicyPool, ServedVersion
from tests.optimizer.unit.learning_fakes import GONE, POLICY, SyntheticRewards


class Models:
    """A model registry in memory: numbered versions of serialized policies."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], StoredModel] = {}

    def register(self, policy: BanditPolicy) -> str:
        version = str(len(self.versions) + 1)
        self.versions[policy.name, version] = StoredModel(
            name=policy.name,
            version=version,
            spec=policy.spec,
            model_data=policy.serialize(),
            examples_learned=policy.examples_learned,
        )
        return version

    def serving_version(self, name: str) -> str | None:
        return None

    def load(self, name: str, version: str) -> StoredModel:
        return self.versions[name, version]


class RecordPublisher:
    """Publishes as the registry publisher does: register, then compare-and-set the record."""

    def __init__(self, records: ServingRecords, models: Models) -> None:
        self.records = records
        self.models = models

    def publish(
        self, policy: BanditPolicy, *, cursor: int, parent_version: str | None
    ) -> str | None:
        version = self.models.register(policy)
        recorded = self.records.record_serving(
            policy_name=policy.name,
            version=version,
            cursor=cursor,
            source="online",
            actor="learner",
            now=utcnow(),
            only_replacing=parent_version,
        )
        return version if recorded else None

    def serving(self, name: str) -> ServedVersion | None:
        return served_version(self.records, name)


class World:
    def __init__(self, catalog_spec: CatalogSpec) -> None:
        self.store = MemoryLearningStore()
        self.catalog = CatalogCache(MemoryCatalog.of(catalog_spec))
        self.rewards = SyntheticRewards(self.store, self.catalog.current()[0])
        self.models = Models()
        self.pool = PolicyPool()

    def pool_learner(self) -> OnlineLearner:
        return OnlineLearner(self.store, self.catalog, publisher=PoolPublisher(self.pool))

    def registry_learner(self) -> OnlineLearner:
        return OnlineLearner(
            self.store,
            self.catalog,
            source=self.models,
            publisher=RecordPublisher(self.store, self.models),
        )

    def learnable(self, through: int, name: str = POLICY) -> int:
        return len(
            self.store.final_rewards_after(cursor=0, limit=10**9, policy_name=name, through=through)
        )

    def promote_untrained(self) -> str:
        """A manager's promotion of a version trained on nothing (cut-off 0)."""
        snapshot, _ = self.catalog.current()
        frame = next(f for f in snapshot.frames if f.key == POLICY)
        version = self.models.register(BanditPolicy(frame.spec.policy_spec(), name=POLICY))
        self.store.record_serving(
            policy_name=POLICY,
            version=version,
            cursor=0,
            source="promotion",
            actor="ops",
            now=utcnow(),
        )
        return version


@pytest.fixture
def world(example_catalog: CatalogSpec) -> World:
    return World(example_catalog)


def test_every_final_reward_is_learned_once_and_rewards_of_no_frame_are_skipped(
    world: World,
) -> None:
    added = world.rewards.add(30, seed=1)
    learner = world.pool_learner()
    first = learner.step(limit=12)
    rest = learner.step()
    assert learner.step().learned == 0
    assert rest.cursor == added[-1].sequence
    gone = sum(r.policy_name == GONE for r in added)
    assert first.learned + rest.learned == len(added) - gone
    assert first.skipped + rest.skipped == gone
    assert GONE not in learner.lineages
    assert learner.lineages[POLICY].policy.examples_learned == world.learnable(rest.cursor)


def test_a_checkpoint_saves_each_model_with_its_cursor_and_publishes_it(world: World) -> None:
    world.rewards.add(20, seed=2)
    learner = world.pool_learner()
    learner.run_until_caught_up()
    assert learner.checkpoint() == {POLICY: f"online-{learner.cursor}"}
    assert world.pool.loaded()[POLICY] == f"online-{learner.cursor}"
    saved = world.store.newest_checkpoint(POLICY)
    assert saved is not None
    assert saved.cursor == learner.cursor
    assert saved.examples_learned == world.learnable(learner.cursor)
    assert saved.published_version == f"online-{learner.cursor}"
    assert learner.checkpoint() == {}  # nothing new


def test_a_restart_resumes_at_the_checkpointed_cursor_and_relearns_only_what_was_lost(
    world: World,
) -> None:
    world.rewards.add(40, seed=3)
    reference = world.pool_learner()
    reference.run_until_caught_up()

    first = world.pool_learner()
    first.step(limit=15)
    first.checkpoint()
    saved_at = first.cursor
    first.step(limit=10)  # learned, never checkpointed: lost in the crash
    del first

    resumed = world.pool_learner()
    resumed.load()
    assert resumed.cursor == saved_at
    assert resumed.lineages[POLICY].policy.examples_learned == world.learnable(saved_at)
    resumed.run_until_caught_up()
    assert resumed.cursor == reference.cursor
    mine, theirs = resumed.lineages[POLICY].policy, reference.lineages[POLICY].policy
    assert mine.examples_learned == theirs.examples_learned
    _, lines = world.catalog.current()
    actions = [lines[int(a)] for a in world.rewards.candidates[POLICY][:20]]
    shared = "shared |c hc_D lang_en usage:0.2 |t health_c_to_d |h h10 wd0 we0"
    assert np.array_equal(
        mine.model.predict(shared, actions), theirs.model.predict(shared, actions)
    )


def test_a_promotion_is_taken_over_with_a_replay_from_its_cut_off(world: World) -> None:
    learner = world.registry_learner()
    world.rewards.add(15, seed=4)
    learner.run_until_caught_up()
    online = learner.checkpoint()[POLICY]
    assert served_version(world.store, POLICY) == ServedVersion(online, learner.cursor)

    promoted = world.promote_untrained()
    world.rewards.add(15, seed=5)
    learner.run_until_caught_up()
    after = learner.checkpoint()[POLICY]

    assert after not in (online, promoted)
    assert served_version(world.store, POLICY) == ServedVersion(after, learner.cursor)
    lineage = learner.lineages[POLICY]
    assert lineage.base_version == after
    assert lineage.policy.examples_learned == world.learnable(learner.cursor)
    stored = world.models.load(POLICY, after)
    assert stored.examples_learned == world.learnable(learner.cursor)


def test_a_publication_never_overwrites_a_promotion_made_meanwhile(world: World) -> None:
    learner = world.registry_learner()
    world.rewards.add(12, seed=6)
    learner.run_until_caught_up()
    learner.checkpoint()
    world.rewards.add(12, seed=7)
    learner.run_until_caught_up()
    learner.follow_promotions = lambda: []  # type: ignore[method-assign]  # promoted just after
    promoted = world.promote_untrained()

    assert learner.checkpoint() == {}
    assert served_version(world.store, POLICY) == ServedVersion(promoted, 0)


def test_a_new_learner_starts_a_policy_from_the_version_that_serves(world: World) -> None:
    world.rewards.add(10, seed=8)
    promoted = world.promote_untrained()
    learner = world.registry_learner()
    learner.run_until_caught_up()
    lineage = learner.lineages[POLICY]
    assert lineage.base_version == promoted
    assert lineage.policy.examples_learned == world.learnable(learner.cursor)


def test_other_processes_serve_the_checkpointed_weights(world: World) -> None:
    world.rewards.add(16, seed=9)
    learner = world.pool_learner()
    other = PolicyPool(CheckpointSource(world.store))
    snapshot, _ = world.catalog.current()
    other.want(list(snapshot.frames))
    assert other.refresh() == []

    learner.run_until_caught_up()
    learner.checkpoint()
    assert other.refresh() == [POLICY]
    assert other.loaded()[POLICY] == world.pool.loaded()[POLICY]
    assert other.refresh() == []


def test_drift_found_while_learning_and_caught_up_with_goes_to_the_audit_log(
    world: World,
) -> None:
    """Class C converts on the lowest action id, class D on the highest; then they swap. The
    logging policy had learned the first world: it mostly picks what converted there."""
    audit = MemoryAuditLog()
    learner = OnlineLearner(world.store, world.catalog, audit=audit)
    pool = world.rewards.candidates[POLICY][:4]
    rng = np.random.default_rng(5)

    def add(n: int, *, swapped: bool) -> None:
        for i in range(n):
            klass = "CD"[i % 2]
            best = pool[0] if (klass == "C") != swapped else pool[-1]
            was_best = pool[0] if klass == "C" else pool[-1]
            greedy = rng.random() < 0.7
            chosen = int(was_best if greedy else pool[rng.integers(len(pool))])
            world.store.add_final_reward(
                LearnableReward(
                    sequence=0,
                    policy_name=POLICY,
                    context={"health_class": klass, "language": "en", "trigger": "health_c_to_d"},
                    action_ids=pool.astype(np.int32),
                    chosen_action_id=chosen,
                    probability=(0.7 if chosen == was_best else 0.0) + 0.3 / len(pool),
                    reward=float(rng.random() < (0.8 if chosen == best else 0.1)),
                )
            )

    add(3_000, swapped=False)
    assert learner.run_until_caught_up() == 3_000
    assert audit.entries(action="policy.drift") == []
    assert learner.run_until_caught_up() == 0
    add(3_000, swapped=True)
    reports = []
    while (report := learner.step(limit=500)).learned:
        reports.append(report)
    changes = [c for r in reports for c in r.drift]
    assert [c.drifting for c in changes] == [True, False]
    assert [e.action for e in audit.entries(action="policy.drift")] == [
        "policy.drift_recovered",
        "policy.drift_found",
    ]
    (found,) = audit.entries(action="policy.drift_found")
    assert found.subject.startswith(f"{POLICY}:")
    assert found.details is not None
    assert found.details["reward_sequence"] == changes[0].sequence > 3_000
    (recovered,) = audit.entries(action="policy.drift_recovered")
    assert recovered.details is not None
    assert recovered.details["reward_sequence"] == changes[1].sequence
    assert not learner.lineages[POLICY].policy.drifting
