"""`campopt demo`: the whole loop on the embedded default, start to finish in one command."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.container import build_container
from api.settings import Settings
from campaign_db.catalog import load_catalog
from campaign_db.engine import Engine, session_scope
from campaign_db.learning import SqlLearningStore
from optimizer.core.catalog import CatalogSpec
from optimizer.core.values import SeededIds
from optimizer.learner import OnlineLearner, PoolPublisher
from optimizer.simulator.report import summarize, write_report
from optimizer.simulator.run import (
    Simulation,
    SimulationConfig,
    SimulationResult,
    SimulationStores,
)


@dataclass(frozen=True)
class DemoResult:
    summary: dict[str, Any]
    report: Path
    database: Path
    registered: dict[str, str]
    simulation: SimulationResult


def priced_unsubscribes(catalog: CatalogSpec, cost: float) -> CatalogSpec:
    """The catalog with every frame pricing an unsubscribe within its window at `cost`."""
    frames = [
        frame.model_copy(
            update={
                "attribution": frame.attribution.model_copy(
                    update={"harm": frame.attribution.harm.model_copy(update={"unsubscribe": cost})}
                )
            }
        )
        for frame in catalog.frames
    ]
    return CatalogSpec.model_validate(catalog.model_copy(update={"frames": frames}).model_dump())


def run_demo(
    *,
    catalog: CatalogSpec,
    out: Path,
    config: SimulationConfig,
    register: bool = True,
    on_day: Callable[[int], None] | None = None,
) -> DemoResult:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    database = out / "campopt.db"
    for suffix in ("", "-wal", "-shm", ".campopt-scheduler.lock"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    settings = Settings(
        data_dir=out,
        database_url=f"sqlite:///{database.resolve()}",
        mlflow_tracking_uri="disabled",
        scheduler_enabled=False,
    )
    container = build_container(settings, ids=SeededIds(config.seed))
    container.checkpointer.start()
    try:
        with session_scope(container.engine, write=True) as session:
            load_catalog(session, catalog=catalog, source="example catalog", actor="demo")
        container.catalog.refresh(force=True)
        learner = OnlineLearner(
            container.learning,
            container.catalog,
            publisher=PoolPublisher(container.policies),
            audit=container.audit,
        )
        stores = SimulationStores(
            customers=container.customers,
            outbox=container.outbox,
            feedback=container.feedback,
            rewards=container.rewards,
            logs=container.decision_logs,
        )
        simulation = Simulation(
            stores,
            container.decisions,
            learner,
            config=config,
            usage_config=settings.usage_index,
        )
        simulation.populate()
        result = simulation.run(on_day)
        snapshot, lines = container.catalog.current()
        contacts = container.decision_logs.contacts()
        summary = summarize(
            result,
            contacts=contacts,
            snapshot=snapshot,
            runtime_seconds=time.perf_counter() - started,
        )
        registered = {}
        if register:
            registered = _register(container.engine, learner, snapshot, lines, out)
            summary["registered_champions"] = registered
        report = write_report(result, summary, contacts=contacts, snapshot=snapshot, out=out)
    finally:
        container.close()
    return DemoResult(
        summary=summary,
        report=report,
        database=database,
        registered=registered,
        simulation=result,
    )


def _register(
    engine: Engine, learner: OnlineLearner, snapshot: Any, lines: Any, out: Path
) -> dict[str, str]:
    """Register the learned policies in a local MLflow store and put them in service as
    champions (serving record and alias), so `serve` on the demo folder starts from them."""
    from optimizer.publishing import make_serving
    from optimizer.registry import PolicyRegistry

    registry = PolicyRegistry(
        f"sqlite:///{(out / 'mlflow.db').resolve()}", artifact_root=out / "mlartifacts"
    )
    action_lines = {sig: lines[action_id] for sig, action_id in snapshot.actions.items()}
    versions = {}
    for name, lineage in sorted(learner.lineages.items()):
        frame = next((f for f in snapshot.frames if f.key == name), None)
        floor = lineage.policy.spec.floor_share(frame.spec.exploration) if frame else 0.05
        versions[name] = registry.register(
            lineage.policy,
            action_lines=action_lines,
            floor_share=floor,
            source="demo",
            tags={"cursor": str(lineage.cursor)},
        )
        make_serving(
            SqlLearningStore(engine),
            registry,
            name=name,
            version=versions[name],
            cursor=lineage.cursor,
            source="demo",
            actor="demo",
        )
    return versions
