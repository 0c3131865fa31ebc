"""The FastAPI app factory: everything is built inside the lifespan, nothing at import time."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

from api.auth import KeyVerifier
from api.errors import BodySizeLimit, install_error_handlers
from api.observability import RequestMetrics, configure_logging, set_policy_versions
from api.routes import customers, decisions, feedback, governance, health, outbound
from api.scheduler import SchedulerRunner
from api.settings import Settings
from campaign_db import migrate
from campaign_db.catalog import SqlCatalogReader
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import Checkpointer, create_engine_from_url
from campaign_db.keys import SqlKeyStore
from campaign_db.learning import SqlLearningStore
from offline_eval.gate import GateConfig
from optimizer.decisions import DecisionService
from optimizer.lifecycle import PolicyLifecycle
from optimizer.serving import CatalogCache, CheckpointSource, ModelSource, PolicyPool

log = logging.getLogger("campopt.api")
DOCS_ASSETS = "/docs-assets"


@dataclass
class Services:
    """What the routes need, built once per process."""

    settings: Settings
    engine: Engine
    catalog: CatalogCache
    policies: PolicyPool
    decisions: DecisionService
    checkpointer: Checkpointer
    reloader: PolicyReloader
    keys: KeyVerifier
    source: ModelSource | None = None
    scheduler: SchedulerRunner | None = None
    extras: dict[str, object] = field(default_factory=dict)

    def registry_reachable(self) -> bool:
        """Ask MLflow at most every ten seconds."""
        checked = self.extras.get("registry_checked")
        now = time.monotonic()
        if isinstance(checked, tuple) and now - checked[0] < 10.0:
            return bool(checked[1])
        ping = getattr(self.source, "ping", None)
        reachable = bool(ping()) if ping is not None else True
        self.extras["registry_checked"] = (now, reachable)
        return reachable

    def lifecycle(self) -> PolicyLifecycle | None:
        """Training, gating and promotion; needs the MLflow registry."""
        if self.source is None:
            return None
        cached = self.extras.get("lifecycle")
        if cached is None:
            from campaign_db.audit import SqlAuditLog
            from campaign_db.decision_logs import SqlDecisionLogs
            from optimizer.lifecycle import LifecycleConfig
            from optimizer.lifecycle import PolicyLifecycle as Lifecycle
            from optimizer.registry import PolicyRegistry

            assert isinstance(self.source, PolicyRegistry)
            cached = Lifecycle(
                SqlLearningStore(self.engine),
                self.source,
                self.catalog,
                logs=SqlDecisionLogs(self.engine),
                audit=SqlAuditLog(self.engine),
                config=LifecycleConfig(
                    estimator=self.settings.gate_estimator,
                    gate=GateConfig(
                        min_lift=self.settings.gate_min_lift,
                        min_effective_sample_size=self.settings.gate_min_effective_sample_size,
                    ),
                    max_evidence_age=timedelta(days=self.settings.max_evidence_age_days),
                ),
            )
            self.extras["lifecycle"] = cached
        assert isinstance(cached, PolicyLifecycle)
        return cached

    def start(self, *, first_reload_seconds: float = 10.0) -> None:
        """Read the catalog, load the champions (waiting a bounded time for the registry: an
        unreachable one must not hold up serving), keep reloading, and run the jobs if enabled."""
        self.catalog.refresh(force=True)
        snapshot, _ = self.catalog.current()
        self.policies.want(list(snapshot.frames))
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
            from optimizer.registry import PolicyRegistry

            assert isinstance(self.source, PolicyRegistry)
            publisher = RegistryPublisher(SqlLearningStore(self.engine), self.source, self.catalog)
        learner = OnlineLearner(
            SqlLearningStore(self.engine), self.catalog, source=self.source, publisher=publisher
        )
        self.scheduler = SchedulerRunner(self, learner).start()
        return self.scheduler

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.decisions.close()
        self.reloader.stop()
        self.checkpointer.stop()
        self.checkpointer.checkpoint()
        self.engine.dispose()


def tune_garbage_collector() -> None:
    """Freeze what start-up allocated and collect less often.

    A decision allocates a few hundred short-lived objects; with default thresholds the cyclic
    collector's full passes over the start-up heap (catalog, schemas, models) stall about one
    request in a hundred by 10 ms or more. Frozen objects are never scanned again.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


class PolicyReloader:
    """Looks for newly aliased policy versions every `interval` seconds (hot reload)."""

    def __init__(self, policies: PolicyPool, *, interval: float) -> None:
        self._policies = policies
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-reload", daemon=True)
        self.first_pass = threading.Event()

    def start(self) -> PolicyReloader:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            changed = self._policies.refresh()
            for name in changed:
                log.info(
                    "policy reloaded",
                    extra={"policy": name, "version": self._policies.loaded()[name]},
                )
            set_policy_versions(self._policies.loaded())
            self.first_pass.set()
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()


def model_source(settings: Settings) -> ModelSource | None:
    """The MLflow registry, unless the tracking URI is `disabled`."""
    if settings.mlflow_tracking_uri == "disabled":
        return None
    from optimizer.registry import PolicyRegistry, RegistryError, ensure_store

    try:
        ensure_store(settings.mlflow_tracking_uri, artifact_root=settings.artifact_root)
    except RegistryError as exc:  # serving goes on with what it has; readiness says degraded
        log.warning("%s", exc.message)
    return PolicyRegistry(settings.mlflow_tracking_uri, artifact_root=settings.artifact_root)


def serving_source(engine: Engine, registry: ModelSource | None) -> ModelSource:
    """What serving loads: with a registry, the versions our serving record approved (never
    whatever MLflow's alias says); without one, the learner's newest checkpoints."""
    if registry is None:
        return CheckpointSource(SqlLearningStore(engine))
    from optimizer.publishing import ApprovedSource
    from optimizer.registry import PolicyRegistry

    assert isinstance(registry, PolicyRegistry)
    return ApprovedSource(SqlLearningStore(engine), registry)


def build_services(settings: Settings, *, source: ModelSource | None = None) -> Services:
    engine = create_engine_from_url(settings.database_url, autocheckpoint=False)
    if settings.migrate_on_start:
        migrate.upgrade(engine)
    catalog = CatalogCache(
        SqlCatalogReader(engine), check_every_seconds=settings.catalog_check_seconds
    )
    source = source if source is not None else model_source(settings)
    policies = PolicyPool(
        serving_source(engine, source),
        on_error=lambda name, exc: log.warning("policy %s: keeping loaded version: %s", name, exc),
    )
    return Services(
        settings=settings,
        engine=engine,
        catalog=catalog,
        policies=policies,
        decisions=DecisionService(SqlDecisionStore(engine), catalog=catalog, policies=policies),
        checkpointer=Checkpointer(engine).start(),
        reloader=PolicyReloader(policies, interval=settings.policy_reload_seconds),
        keys=KeyVerifier(SqlKeyStore(engine)),
        source=source,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.log_json:
            configure_logging(settings.log_level)
        services = build_services(settings)
        services.start()
        tune_garbage_collector()
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    # Swagger UI and ReDoc from files the package ships: the CDN pages stay blank offline
    app = FastAPIOffline(
        title="Campaign optimizer",
        version="0.1.0",
        summary="Contextual-bandit decisions inside approved decision frames.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    app.include_router(health.router)
    app.include_router(decisions.router)
    app.include_router(customers.router)
    app.include_router(feedback.router)
    app.include_router(outbound.router)
    app.include_router(governance.router)
    return app
