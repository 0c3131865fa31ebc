"""Exactly-once learning under any interleaving of learn, checkpoint, promote, tamper and crash.

A Hypothesis state machine drives one learner (and its replacements after crashes) through
random sequences of: new final rewards, partial learn batches, checkpoints that may crash at any
point of publishing, promotions and rollbacks to earlier versions, alias moves in MLflow made
behind the service's back, and restarts. After every step it checks the promise: every model —
in the learner's memory, in its newest checkpoints, and the one serving — holds exactly the
final rewards of its policy up to its cursor, each once; and serving follows only the service's
own record. It runs on the in-memory stores and on both databases: the memory store keeps the
same promises as SQL.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import Engine
from sqlmodel import SQLModel

from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.engine import session_scope
from campaign_db.learning import SqlLearningStore
from campaign_db.rewards import SqlRewardStore
from optimizer.core.catalog import CatalogSpec
from optimizer.learner import OnlineLearner
from optimizer.memory.catalog import MemoryCatalog
from optimizer.memory.learning import MemoryLearningStore
from optimizer.ports.catalog import CatalogReader
from optimizer.ports.learning import LearningStore
from optimizer.publishing import (
    ApprovedSource,
    RegistryPublisher,
    make_serving,
    reconcile_aliases,
    served_version,
)
from optimizer.registry import CHAMPION, PolicyRegistry
from optimizer.rewards import finalize_due
from optimizer.serving import CatalogCache
from tests.optimizer.test_learner import START, learnable_count, make_decisions
from tests.optimizer.unit.learning_fakes import SyntheticRewards

POLICY = "churn_prevention"
# Raise it (CAMPOPT_INTERLEAVINGS=200) to search longer.
EXAMPLES = int(os.environ.get("CAMPOPT_INTERLEAVINGS", "20"))
CRASH_POINTS = ("registered", "recorded", "alias_moved", "published")


class Crash(BaseException):
    """The process dies here: nothing after this point runs, nothing in memory survives."""


class CrashingRegistry:
    """The real registry, with a process death armed at one point of a publication."""

    def __init__(self, inner: PolicyRegistry) -> None:
        self.inner = inner
        self.crash_at: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def register(self, *args: Any, **kwargs: Any) -> str:
        version = self.inner.register(*args, **kwargs)
        self._maybe("registered")
        return version

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._maybe("recorded")
        self.inner.set_alias(name, alias, version)
        self._maybe("alias_moved")

    def _maybe(self, point: str) -> None:
        if self.crash_at == point:
            self.crash_at = None
            raise Crash(point)


class CrashingPublisher(RegistryPublisher):
    """Dies after the publication, before the learner marks its checkpoint as published."""

    crash_after = False

    def publish(self, *args: Any, **kwargs: Any) -> str | None:
        version = super().publish(*args, **kwargs)
        if self.crash_after:
            self.crash_after = False
            raise Crash("published")
        return version


@dataclass(frozen=True)
class World:
    """The stores one example runs on, and how final rewards arrive in them."""

    store: LearningStore
    catalog: CatalogReader
    add_final_rewards: Callable[[int, int], object]


def sql_world(engine: Engine, catalog: CatalogSpec) -> World:
    """The database emptied and the catalog loaded; rewards from real decisions."""
    with session_scope(engine, write=True) as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            session.execute(table.delete())
        load_catalog(session, catalog=catalog, source="example", actor="test")

    def add_final_rewards(n: int, seed: int) -> None:
        make_decisions(engine, n, seed=seed)
        finalize_due(SqlRewardStore(engine), now=START + timedelta(days=40))

    return World(SqlLearningStore(engine), SqlCatalogReader(engine), add_final_rewards)


def memory_world(catalog: CatalogSpec) -> World:
    store = MemoryLearningStore()
    reader = MemoryCatalog.of(catalog)
    rewards = SyntheticRewards(store, reader.snapshot())
    return World(store, reader, lambda n, seed: rewards.add(n, seed=seed))


class LearnerInterleavings(RuleBasedStateMachine):
    make_world: Callable[[], World]
    registry: PolicyRegistry

    @initialize()
    def fresh_learner(self) -> None:
        """Every example starts from the same empty stores, so Hypothesis can replay and
        shrink it."""
        self.world = type(self).make_world()
        self.store = self.world.store
        self.seeds = itertools.count()
        self.catalog = CatalogCache(self.world.catalog)
        self.crashing = CrashingRegistry(self.registry)
        self.learner = self._start()
        self.published: list[str] = []

    def _start(self) -> OnlineLearner:
        """A new process: it knows only what the database and the registry hold."""
        self.publisher = CrashingPublisher(
            self.store,
            self.crashing,  # type: ignore[arg-type]
            self.catalog,
        )
        return OnlineLearner(
            self.store, self.catalog, source=self.registry, publisher=self.publisher
        )

    @rule(n=st.integers(1, 5))
    def rewards_become_final(self, n: int) -> None:
        self.world.add_final_rewards(n, next(self.seeds))

    @rule(limit=st.integers(1, 8))
    def learn(self, limit: int) -> None:
        self.learner.step(limit=limit)

    @rule(crash_at=st.sampled_from((None, *CRASH_POINTS)))
    def checkpoint(self, crash_at: str | None) -> None:
        if crash_at == "published":
            self.publisher.crash_after = True
        else:
            self.crashing.crash_at = crash_at
        try:
            self.published.extend(self.learner.checkpoint().values())
        except Crash:
            self.learner = self._start()
        finally:
            self.crashing.crash_at = None
            self.publisher.crash_after = False

    @rule()
    def restart(self) -> None:
        self.learner = self._start()

    @precondition(lambda self: self.published)
    @rule(data=st.data())
    def manager_rolls_back(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from(self.published))
        cut_off = int(self.registry.version_info(POLICY, version).tags["campopt.cursor"])
        make_serving(
            self.store,
            self.registry,
            name=POLICY,
            version=version,
            cursor=cut_off,
            source="rollback",
            actor="test",
        )

    @precondition(lambda self: self.published)
    @rule(data=st.data())
    def someone_moves_the_alias_in_mlflow(self, data: st.DataObject) -> None:
        self.registry.set_alias(POLICY, CHAMPION, data.draw(st.sampled_from(self.published)))

    @rule()
    def reconcile(self) -> None:
        reconcile_aliases(self.store, self.registry)

    @invariant()
    def every_model_holds_each_reward_up_to_its_cursor_once(self) -> None:
        for name, lineage in self.learner.lineages.items():
            assert lineage.policy.examples_learned == learnable_count(
                self.store, name, lineage.cursor
            ), f"in memory: {name}"
        for checkpoint in self.store.newest_checkpoints():
            assert checkpoint.examples_learned == learnable_count(
                self.store, checkpoint.policy_name, checkpoint.cursor
            ), f"checkpoint {checkpoint.id} at cursor {checkpoint.cursor}"
        served = served_version(self.store, POLICY)
        if served is not None:
            tags = self.registry.version_info(POLICY, served.version).tags
            assert int(tags["campopt.examples_learned"]) == learnable_count(
                self.store, POLICY, served.cursor
            ), f"serving v{served.version}"

    @invariant()
    def serving_follows_only_the_services_record(self) -> None:
        served = served_version(self.store, POLICY)
        source = ApprovedSource(self.store, self.registry)
        assert source.serving_version(POLICY) == (served.version if served else None)


@pytest.fixture
def registry(tmp_path: Path) -> PolicyRegistry:
    registry = PolicyRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path)
    registry.experiment_id()
    return registry


def test_learning_is_exactly_once_under_any_interleaving(
    store_engine: Engine | None, registry: PolicyRegistry, example_catalog: CatalogSpec
) -> None:
    engine = store_engine
    LearnerInterleavings.make_world = (
        (lambda: memory_world(example_catalog))
        if engine is None
        else (lambda: sql_world(engine, example_catalog))
    )
    LearnerInterleavings.registry = registry
    run = LearnerInterleavings.TestCase
    run.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=24,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    run().runTest()
