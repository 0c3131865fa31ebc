"""The composition root: every store and service of a process, built in one place.

`build_container` constructs and starts nothing in the background; `Container.start` does
(checkpoints, hot reload, the jobs), so a one-shot command builds what it needs and leaves no
thread behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from api.auth import KeyVerifier
from api.readiness import ReadinessProbe
from api.reloader import PolicyReloader
from api.scheduler import SchedulerRunner
from api.settings import Settings
from campaign_db import migrate
from campaign_db.audit import SqlAuditLog
from campaign_db.catalog import SqlCatalogReader
from campaign_db.cockpit import SqlCockpitReader
from campaign_db.customers import SqlCustomerStore
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import Checkpointer, Engine, create_engine_from_url
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.governance import SqlGovernanceStore
from campaign_db.keys import SqlKeyStore
from campaign_db.learning import SqlLearningStore
from campaign_db.outbox import SqlOutboxStore
from campaign_db.rankings import SqlRankingStore
from campaign_db.rewards import SqlRewardStore
from offline_eval.gate import GateConfig
from optimizer.core.values import IdSource, clock_id
from optimizer.decisions import DecisionService
from optimizer.ports.audit import AuditLog
from optimizer.ports.cockpit import CockpitReader
from optimizer.ports.customers import CustomerStore
from optimizer.ports.decision_logs import DecisionLogReader
from optimizer.ports.feedback import FeedbackStore
from optimizer.ports.governance import GovernanceStore
from optimizer.ports.learning import LearningStore
from optimizer.ports.outbox import OutboxStore
from optimizer.ports.rewards import RewardStore
from optimizer.rankings import RankingService
from optimizer.serving import CatalogCache, CheckpointSource, ModelSource, PolicyPool

if TYPE_CHECKING:
    from optimizer.lifecycle import LifecycleConfig, PolicyLifecycle
    from optimizer.registry import PolicyRegistry

log = logging.getLogger("campopt.api")


@dataclass
class Container:
    """What the routes, jobs and commands need, built once per process.

    A store behind a port is one field typed by its Protocol and one line in `build_container`.
    """

    settings: Settings
    engine: Engine
    catalog: CatalogCache
    policies: PolicyPool
    decisions: DecisionService
    rankings: RankingService
    checkpointer: Checkpointer
    reloader: PolicyReloader
    readiness: ReadinessProbe
    keys: KeyVerifier
    audit: AuditLog
    learning: LearningStore
    decision_logs: DecisionLogReader
    rewards: RewardStore
    outbox: OutboxStore
    governance: GovernanceStore
    feedback: FeedbackStore
    customers: CustomerStore
    cockpit: CockpitReader
    source: PolicyRegistry | None = None
    """The MLflow registry; None when `CAMPOPT_MLFLOW_TRACKING_URI=disabled`."""
    scheduler: SchedulerRunner | None = None
    _lifecycle: PolicyLifecycle | None = field(default=None, init=False, repr=False)

    def lifecycle(self) -> PolicyLifecycle | None:
        """Training, gating and promotion, built on first use; needs the MLflow registry."""
        if self.source is None:
            return None
        if self._lifecycle is None:
            from optimizer.lifecycle import PolicyLifecycle

            self._lifecycle = PolicyLifecycle(
                self.learning,
                self.source,
                self.catalog,
                logs=self.decision_logs,
                audit=self.audit,
                config=lifecycle_config(self.settings),
            )
        return self._lifecycle

    def _want_every_frame(self) -> None:
        self.catalog.refresh(force=True)
        snapshot, _ = self.catalog.current()
        self.policies.want(list(snapshot.frames))

    def load_champions(self) -> None:
        """Read the catalog and load every frame's serving policy, once, in this thread."""
        self._want_every_frame()
        self.policies.refresh()

    def start(self, *, first_reload_seconds: float = 10.0) -> None:
        """Read the catalog, load the champions (waiting a bounded time for the registry: an
        unreachable one must not hold up serving), keep reloading, and run the jobs if enabled."""
        self.checkpointer.start()
        self._want_every_frame()
        self.reloader.start()
        self.reloader.first_pass.wait(first_reload_seconds)
        if self.settings.scheduler_enabled:
            self.start_scheduler()

    def start_scheduler(self) -> SchedulerRunner:
        """Run the jobs here whenever this process holds the leader lock."""
        from optimizer.learner import OnlineLearner, PoolPublisher, Publisher

        publisher: Publisher = PoolPublisher(self.policies)
        if self.source is not None:
            from optimizer.publishing import RegistryPublisher

            publisher = RegistryPublisher(self.learning, self.source, self.catalog)
        learner = OnlineLearner(
            self.learning, self.catalog, source=self.source, publisher=publisher, audit=self.audit
        )
        self.scheduler = SchedulerRunner(self, learner).start()
        return self.scheduler

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.decisions.close()
        self.rankings.close()
        self.reloader.stop()
        self.checkpointer.stop()
        self.checkpointer.checkpoint()
        self.engine.dispose()


def build_container(
    settings: Settings, *, background_checkpoints: bool = True, ids: IdSource = clock_id
) -> Container:
    """Construct every store and service from the settings; starts no thread.

    A server copies SQLite's WAL back in the checkpointer's thread (`start`), off the request
    path; a one-shot command (`background_checkpoints=False`) lets SQLite do it on commit.
    `ids` names decisions: a simulation passes seeded ones.
    """
    engine = create_engine_from_url(
        settings.database_url, autocheckpoint=not background_checkpoints
    )
    if settings.migrate_on_start:
        migrate.upgrade(engine)
    catalog = CatalogCache(
        SqlCatalogReader(engine), check_every_seconds=settings.catalog_check_seconds
    )
    registry = model_registry(settings)
    learning = SqlLearningStore(engine)
    policies = PolicyPool(
        serving_source(learning, registry),
        on_error=lambda name, exc: log.warning("policy %s: keeping loaded version: %s", name, exc),
    )
    reloader = PolicyReloader(policies, interval=settings.policy_reload_seconds)
    return Container(
        settings=settings,
        engine=engine,
        catalog=catalog,
        policies=policies,
        decisions=DecisionService(
            SqlDecisionStore(engine), catalog=catalog, policies=policies, ids=ids
        ),
        rankings=RankingService(
            SqlRankingStore(engine), catalog=catalog, policies=policies, ids=ids
        ),
        checkpointer=Checkpointer(engine),
        reloader=reloader,
        readiness=ReadinessProbe(
            engine=engine,
            catalog=catalog,
            policies=policies,
            first_reload=reloader.first_pass,
            registry=registry,
            learning=learning,
        ),
        keys=KeyVerifier(SqlKeyStore(engine)),
        audit=SqlAuditLog(engine),
        learning=learning,
        decision_logs=SqlDecisionLogs(engine),
        rewards=SqlRewardStore(engine),
        outbox=SqlOutboxStore(engine),
        governance=SqlGovernanceStore(engine),
        feedback=SqlFeedbackStore(engine),
        customers=SqlCustomerStore(engine),
        cockpit=SqlCockpitReader(engine),
        source=registry,
    )


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    from optimizer.lifecycle import LifecycleConfig

    return LifecycleConfig(
        estimator=settings.gate_estimator,
        gate=GateConfig(
            min_lift=settings.gate_min_lift,
            min_effective_sample_size=settings.gate_min_effective_sample_size,
        ),
        max_evidence_age=timedelta(days=settings.max_evidence_age_days),
    )


def model_registry(settings: Settings) -> PolicyRegistry | None:
    """The MLflow registry, unless the tracking URI is `disabled`."""
    if settings.mlflow_tracking_uri == "disabled":
        return None
    from optimizer.registry import PolicyRegistry, RegistryError, ensure_store

    try:
        ensure_store(settings.mlflow_tracking_uri, artifact_root=settings.artifact_root)
    except RegistryError as exc:  # serving goes on with what it has; readiness says degraded
        log.warning("%s", exc.message)
    return PolicyRegistry(settings.mlflow_tracking_uri, artifact_root=settings.artifact_root)


def serving_source(learning: LearningStore, registry: PolicyRegistry | None) -> ModelSource:
    """What serving loads: with a registry, the versions our serving record approved (never
    whatever MLflow's alias says); without one, the learner's newest checkpoints."""
    if registry is None:
        return CheckpointSource(learning)
    from optimizer.publishing import ApprovedSource

    return ApprovedSource(learning, registry)
