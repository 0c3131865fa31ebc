"""The MLflow registry: versions with lineage, aliases, and corrupt artifacts refused."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from optimizer.core.policy_spec import PolicySpec
from optimizer.errors import ConflictError
from optimizer.policy import BanditPolicy
from optimizer.registry import CHAMPION, PolicyRegistry
from optimizer.serving import PolicyPool

ACTIONS = {f"o{i}|t|email|s": f"|o o{i} |n email |s s |x t{i}" for i in range(6)}


@pytest.fixture
def registry(tmp_path: Path) -> PolicyRegistry:
    return PolicyRegistry(
        f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path / "artifacts"
    )


def trained(name: str, seed: int) -> BanditPolicy:
    policy = BanditPolicy(PolicySpec(), name=name)
    rng = np.random.default_rng(seed)
    lines = list(ACTIONS.values())
    for _ in range(200):
        chosen = int(rng.integers(len(lines)))
        policy.learn(
            "shared |c hc_C",
            lines,
            chosen=chosen,
            reward=float(chosen == seed % 6),
            probability=1 / 6,
        )
    return policy


def test_versions_carry_lineage_and_the_pyfunc_scores_a_dataframe(registry: PolicyRegistry) -> None:
    import pandas as pd

    first = registry.register(
        trained("x", 1), action_lines=ACTIONS, floor_share=0.05, source="test", alias=CHAMPION
    )
    second = registry.register(
        trained("x", 2), action_lines=ACTIONS, floor_share=0.05, source="test", parent_version=first
    )
    assert registry.serving_version("x") == first
    infos = {v.version: v for v in registry.versions("x")}
    assert infos[second].tags["campopt.parent_version"] == first
    assert CHAMPION in infos[first].aliases
    model = mlflow.pyfunc.load_model("models:/campopt-x@champion")
    scored = model.predict(
        pd.DataFrame([{"health_class": "C", "trigger": "t", "candidates": list(ACTIONS)}])
    )
    assert abs(sum(scored["probabilities"][0]) - 1.0) < 1e-9
    assert scored["best"][0] == "o1|t|email|s"


def test_a_corrupt_artifact_is_refused_and_the_champion_stays(
    registry: PolicyRegistry, tmp_path: Path
) -> None:
    good = registry.register(
        trained("y", 3), action_lines=ACTIONS, floor_share=0.05, source="test", alias=CHAMPION
    )
    bad = registry.register(trained("y", 4), action_lines=ACTIONS, floor_share=0.05, source="test")
    files = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri="models:/campopt-y/" + bad, tracking_uri=registry.tracking_uri
        )
    )
    (files / "artifacts" / "model.vw").write_bytes(b"this is not a VW model")

    from optimizer.lifecycle import PolicyLifecycle
    from optimizer.memory.audit import MemoryAuditLog
    from optimizer.memory.decision_logs import MemoryDecisionLogs
    from optimizer.memory.learning import MemoryLearningStore

    registry.tag_version("y", bad, "campopt.evidence_at", "2099-01-01T00:00:00+00:00")
    registry.tag_version("y", bad, "campopt.gate", "promote")
    lifecycle = PolicyLifecycle(
        MemoryLearningStore(),
        registry,
        None,  # type: ignore[arg-type]
        logs=MemoryDecisionLogs(),
        audit=MemoryAuditLog(),
    )
    with pytest.raises(ConflictError, match="cannot be loaded"):
        lifecycle.promote("y", bad, actor="test", reason="try")
    assert registry.serving_version("y") == good

    pool = PolicyPool(registry)
    pool.install(BanditPolicy(PolicySpec(), name="y", version=good))
    registry.set_alias("y", CHAMPION, bad)  # someone moved the alias by hand
    assert pool.refresh() == []
    assert pool.loaded()["y"] == good
    assert pool.last_refresh_ok is False


def test_old_online_checkpoints_are_pruned_but_what_a_rollback_needs_stays(
    registry: PolicyRegistry,
) -> None:
    def online(seed: int) -> str:
        return registry.register(
            trained("z", seed), action_lines=ACTIONS, floor_share=0.05, source="online"
        )

    replaced = online(0)
    candidate = registry.register(
        trained("z", 1), action_lines=ACTIONS, floor_share=0.05, source="offline"
    )
    registry.tag_version("z", candidate, "campopt.replaces", replaced)
    checkpoints = [online(seed) for seed in range(2, 8)]
    registry.set_alias("z", CHAMPION, checkpoints[1])

    pruned = registry.prune_online_versions("z", keep=2)

    left = {v.version for v in registry.versions("z")}
    assert set(pruned) == {checkpoints[0], *checkpoints[2:4]}
    assert left == {replaced, candidate, checkpoints[1], *checkpoints[-2:]}
    assert registry.serving_version("z") == checkpoints[1]
    assert registry.prune_online_versions("z", keep=2) == []


def _open_store(uri: str, artifacts: str) -> str:
    from optimizer.registry import PolicyRegistry, ensure_store

    ensure_store(uri, artifact_root=Path(artifacts))
    return PolicyRegistry(uri, artifact_root=Path(artifacts)).experiment_id()


def test_processes_opening_a_new_store_at_once_all_succeed_on_one_experiment(
    tmp_path: Path,
) -> None:
    """MLflow migrates a new store on first use; processes doing that together used to fail."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        experiments = pool.starmap(_open_store, [(uri, str(tmp_path / "artifacts"))] * 3)
    assert len(set(experiments)) == 1
