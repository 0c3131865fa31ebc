"""The demo's figures repeat with its seed: decision ids, choices, rewards and lift alike."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from api.demo import run_demo
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import create_engine_from_url
from optimizer.core.catalog import CatalogSpec
from optimizer.ports.decision_logs import LogFilters, LoggedContact
from optimizer.simulator.run import SimulationConfig

Fingerprint = tuple[
    dict[str, Any], list[tuple[uuid.UUID, int, float, float, int | None]], list[LoggedContact]
]


def _run(out: Path, catalog: CatalogSpec, seed: int) -> Fingerprint:
    result = run_demo(
        catalog=catalog,
        out=out,
        config=SimulationConfig(customers=500, days=10, seed=seed),
        register=False,
    )
    engine = create_engine_from_url(f"sqlite:///{result.database}")
    try:
        logs = SqlDecisionLogs(engine)
        rows = logs.evaluation_rows(LogFilters()).rows
        contacts = logs.contacts()
    finally:
        engine.dispose()
    logged = [
        (r.decision_id, r.chosen_action_id, r.probability, r.reward, r.reward_sequence)
        for r in rows
    ]
    summary = {k: v for k, v in result.summary.items() if k != "runtime_seconds"}
    return summary, logged, contacts


def test_the_same_seed_gives_the_same_figures_and_another_seed_others(
    tmp_path: Path, example_catalog: CatalogSpec
) -> None:
    first = _run(tmp_path / "first", example_catalog, seed=11)
    again = _run(tmp_path / "again", example_catalog, seed=11)
    other = _run(tmp_path / "other", example_catalog, seed=12)

    summary, logged, contacts = first
    assert summary["learned"] > 0
    assert len(logged) > 20
    assert len(contacts) > 100
    assert again == first
    other_summary, other_logged, _ = other
    assert {d for d, *_ in other_logged}.isdisjoint({d for d, *_ in logged})
    assert other_summary["lift_capture"] != summary["lift_capture"]
    assert other_summary["decisions"] != summary["decisions"]
