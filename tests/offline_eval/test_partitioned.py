"""A log evaluated one partition at a time gives the estimates of one pass over all of it."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from offline_eval import DEFAULT_ESTIMATORS
from offline_eval.io import read_parquet_table
from offline_eval.partitioned import PartitionJob, accumulate_table, evaluate_partitions, merge
from offline_eval.replay import Uniform
from tests.offline_eval.partitioned_log import assert_same_estimates, multi_day_log, one_pass

JOB = PartitionJob(estimators=DEFAULT_ESTIMATORS, policies={"uniform": Uniform()})


def test_file_by_file_equals_one_pass(tmp_path: Path) -> None:
    data, targets = multi_day_log(tmp_path / "log")
    assert len(list((tmp_path / "log").iterdir())) == 7
    assert_same_estimates(evaluate_partitions(tmp_path / "log", JOB), one_pass(data, targets))


def test_any_split_of_the_rows_merges_to_the_same_sums(tmp_path: Path) -> None:
    data, targets = multi_day_log(tmp_path / "log", n=900, seed=3)
    table = read_parquet_table(tmp_path / "log")
    cuts = [0, 1, 250, 251, 700, table.num_rows]
    parts = [accumulate_table(table.slice(a, b - a), JOB) for a, b in itertools.pairwise(cuts)]
    merged = merge(parts)
    want = one_pass(data, targets)
    assert_same_estimates(
        {p: {n: merged[(p, n)].get() for n in by_name} for p, by_name in want.items()}, want
    )


def test_a_replayed_policy_may_not_shadow_a_target_column(tmp_path: Path) -> None:
    multi_day_log(tmp_path / "log", n=200)
    job = PartitionJob(estimators=DEFAULT_ESTIMATORS, policies={"greedy": Uniform()})
    with pytest.raises(ValueError, match="'greedy' is also a target column"):
        evaluate_partitions(tmp_path / "log", job)


@pytest.mark.parametrize("engine", ["partitions", "spark"])
def test_campopt_evaluate_on_an_engine_writes_the_merged_estimates(
    engine: str, tmp_path: Path
) -> None:
    if engine == "spark":
        pytest.importorskip("pyspark", reason="the spark extra is not installed")
        if shutil.which("java") is None:
            pytest.skip("no Java runtime for Spark")
    data, targets = multi_day_log(tmp_path / "log", n=600, seed=8)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--log", str(tmp_path / "log"), "--engine", engine, "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert f"600 logged decisions evaluated on {engine}" in result.output
    written = json.loads((out / "estimates.json").read_text())
    want = one_pass(data, targets)
    assert set(written["policies"]) == set(want)
    for policy, rows in written["policies"].items():
        for row in rows:
            assert row["value"] == pytest.approx(want[policy][row["estimator"]].value, abs=1e-9)


def test_campopt_evaluate_names_what_an_engine_needs(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--engine", "spark", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "--engine spark: needs --log" in result.output
    result = runner.invoke(app, ["evaluate", "--log", str(tmp_path), "--engine", "gpu"])
    assert result.exit_code != 0
    assert "--engine: 'gpu' is not memory, partitions or spark" in result.output
    result = runner.invoke(
        app, ["evaluate", "--log", str(tmp_path / "missing"), "--engine", "partitions"]
    )
    assert result.exit_code != 0
    assert "does not exist" in result.output
