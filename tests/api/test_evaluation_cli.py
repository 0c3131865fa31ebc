"""`campopt evaluate` and `campopt logs export` on a simulated run's logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from api.cli import app
from offline_eval.io import read_dsjson, read_parquet, to_pandas, write_parquet
from optimizer.vw import parse_dsjson

runner = CliRunner()


def url(demo_run: Any) -> str:
    return f"sqlite:///{demo_run.database}"


def test_evaluate_from_the_database_writes_report_and_estimates(
    demo_run: Any, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["evaluate", "--database-url", url(demo_run), "--out", str(out), "--format", "markdown"],
        env={"CAMPOPT_MLFLOW_TRACKING_URI": "disabled"},
    )
    assert result.exit_code == 0, result.output
    estimates = json.loads((out / "estimates.json").read_text())
    names = {p["policy"] for p in estimates["policies"]}
    assert {"uniform", "trained_spec"} <= names
    assert (out / "report.md").exists()
    for policy in estimates["policies"]:
        estimators = {e["estimator"] for e in policy["estimates"]}
        assert {"IPS", "SNIPS", "DR", "SNDR", "DM", "Switch-DR"} <= estimators
    uniform = next(p for p in estimates["policies"] if p["policy"] == "uniform")
    snips = next(e for e in uniform["estimates"] if e["estimator"] == "SNIPS")
    assert snips["ci_low"] <= snips["value"] <= snips["ci_high"]


def test_exported_parquet_reads_back_and_a_file_with_targets_evaluates(
    demo_run: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    result = runner.invoke(app, ["logs", "export", str(folder), "--database-url", url(demo_run)])
    assert result.exit_code == 0, result.output
    data = read_parquet(folder)
    assert data.n > 50
    uniform = np.repeat(1.0 / data.sizes, data.sizes)
    flat = tmp_path / "with_target"
    write_parquet(data, flat, targets={"uniform": uniform})
    frame = to_pandas(data, targets={"uniform": uniform})
    single = tmp_path / "single.parquet"
    frame.to_parquet(single)
    out = tmp_path / "file-eval"
    result = runner.invoke(app, ["evaluate", "--log", str(single), "--out", str(out)])
    assert result.exit_code == 0, result.output
    estimates = json.loads((out / "estimates.json").read_text())
    assert [p["policy"] for p in estimates["policies"]] == ["uniform"]


def test_exported_dsjson_is_read_by_vw_and_round_trips(demo_run: Any, tmp_path: Path) -> None:
    path = tmp_path / "logs.dsjson"
    result = runner.invoke(
        app, ["logs", "export", str(path), "--format", "dsjson", "--database-url", url(demo_run)]
    )
    assert result.exit_code == 0, result.output
    lines = path.read_text().splitlines()
    first = parse_dsjson(lines[0])
    assert first[0]["shared"] is True
    labelled = [e for e in first if e["label"] is not None and not e["shared"]]
    assert len(labelled) == 1
    assert all(e["features"] > 0 for e in first[1:])
    back = read_dsjson(path)
    original = read_parquet_from_db(demo_run, tmp_path)
    assert back.n == original.n
    assert np.array_equal(back.chosen_action_ids, original.chosen_action_ids)
    assert np.allclose(back.reward, original.reward)
    assert np.allclose(back.logged_probability, original.logged_probability)


def read_parquet_from_db(demo_run: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "ref"
    runner.invoke(app, ["logs", "export", str(folder), "--database-url", url(demo_run)])
    return read_parquet(folder)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--log", "/nonexistent.parquet"], "nonexistent"),
        (["--format", "pdf"], "--format"),
        (["--frame", "no_such_frame"], "no policy decisions"),
    ],
)
def test_evaluate_refuses_bad_input_with_a_clear_message(
    demo_run: Any, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = runner.invoke(
        app,
        ["evaluate", "--database-url", url(demo_run), "--out", str(tmp_path / "x"), *args],
        env={"CAMPOPT_MLFLOW_TRACKING_URI": "disabled"},
    )
    assert result.exit_code != 0
    assert fragment in result.output


def test_a_log_with_a_bad_probability_names_the_field(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "decision_id": ["a", "b"],
            "timestamp": pd.to_datetime(["2026-11-01", "2026-11-02"]),
            "candidates": [[1, 2], [1, 2]],
            "chosen_action": [1, 2],
            "logged_probability": [0.5, 0.0],
            "reward": [1.0, 0.0],
            "target__uniform": [[0.5, 0.5], [0.5, 0.5]],
        }
    )
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    result = runner.invoke(app, ["evaluate", "--log", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "logged_probability" in result.output
    assert "1 of 2 rows" in result.output


def test_champion_is_never_replayed_on_decisions_it_learned_from(
    demo_run: Any, tmp_path: Path
) -> None:
    """The demo's online champions consumed every final reward (their cursor covers the whole
    log): replaying them on it would grade them on their own training data. They are left out,
    the report says why, and the trained spec's training window ends before the evaluation's."""
    from api.evaluation import evaluate_database
    from campaign_db.engine import create_engine_from_url
    from campaign_db.learning import SqlLearningStore
    from optimizer.ports.decision_logs import LogFilters
    from optimizer.serving import CheckpointSource

    engine = create_engine_from_url(url(demo_run))
    source = CheckpointSource(SqlLearningStore(engine))
    report = evaluate_database(
        engine,
        filters=LogFilters(),
        out=tmp_path / "eval",
        fmt="markdown",
        later_share=0.5,
        source=source,
    ).to_dict()
    assert "champion" not in {p["policy"] for p in report["policies"]}
    assert any("learned from every evaluation decision" in w for w in report["warnings"])
    (window,) = [w for w in report["windows"] if w["policy"] == "trained_spec"]
    assert window["trained_until"] is not None
    assert window["evaluated_from"] is not None
    assert window["trained_until"] < window["evaluated_from"]
    assert window["trained_rows"] + window["evaluated_rows"] > window["evaluated_rows"]
    text = (tmp_path / "eval" / "report.md").read_text()
    assert f"until {window['trained_until']}" in text
