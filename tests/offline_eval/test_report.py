"""Reports: one call writes the report, estimates.json and plots; segments add up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offline_eval import (
    SNIPS,
    EpsilonGreedy,
    LoggedBandit,
    Uniform,
    cross_fit,
    evaluate,
    replay,
)
from offline_eval.report import segment_estimates
from offline_eval.synthetic import SyntheticEnvironment, SyntheticSetting
from tests.offline_eval.helpers import random_log


@pytest.mark.parametrize(
    ("fmt", "report_file"), [("markdown", "report.md"), ("html", "report.html")]
)
def test_evaluate_writes_report_json_and_plots(fmt: str, report_file: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    sample = SyntheticEnvironment(SyntheticSetting(n_actions=4, population=2000), rng).sample(
        3000, rng
    )
    logged = sample.data
    data = LoggedBandit(
        offsets=logged.offsets,
        action_ids=logged.action_ids,
        chosen_index=logged.chosen_index,
        logged_probability=logged.logged_probability,
        reward=logged.reward,
        logging_probabilities=logged.logging_probabilities,
        context=random_log(rng, 3000).context,  # segment columns
    )
    predictions = cross_fit(data, features=sample.features, rng=rng).predictions
    policies = {
        "uniform": replay(data, policy=Uniform()),
        "greedy": replay(data, policy=EpsilonGreedy(predictions, epsilon=0.1)),
    }
    report = evaluate(
        data,
        policies,
        segments=["health_class", "channel"],
        predictions=predictions,
        out_dir=tmp_path,
        fmt=fmt,  # type: ignore[arg-type]
    )
    for name in (report_file, "estimates.json", "policies.png", "segments_health_class.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "estimates.json").read_text()) == report
    assert [p["policy"] for p in report["policies"]] == ["uniform", "greedy"]
    assert [e["estimator"] for e in report["policies"][0]["estimates"]] == [
        "IPS",
        "SNIPS",
        "DM",
        "DR",
        "SNDR",
        "Switch-DR",
    ]
    assert report["policies"][1]["versus_logging"][3]["estimator"] == "DR - logging"
    text = (tmp_path / report_file).read_text()
    assert "greedy" in text
    assert "health_class" in text


def test_evaluate_without_a_reward_model_uses_ips_and_snips(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    data = random_log(rng, 500)
    report = evaluate(data, {"target": data.target_probabilities}, out_dir=tmp_path)
    assert [e["estimator"] for e in report["policies"][0]["estimates"]] == ["IPS", "SNIPS"]


def test_segments_partition_the_log(rng: np.random.Generator) -> None:
    data = random_log(rng, 900)
    rows = segment_estimates(
        data, by="channel", policies={"t": data.target_probabilities}, estimators=[SNIPS()]
    )
    logged = [r for r in rows if r.policy == "logging"]
    assert sorted(r.segment for r in logged) == ["email", "sms"]
    assert sum(r.estimates[0].n for r in logged) == data.n
    assert sum(r.estimates[0].value * r.estimates[0].n for r in logged) == pytest.approx(
        float(data.reward.sum())
    )


def test_unknown_segment_column_is_named(rng: np.random.Generator, tmp_path: Path) -> None:
    data = random_log(rng, 50)
    with pytest.raises(ValueError, match="context: no column 'region'"):
        evaluate(data, {"t": data.target_probabilities}, segments=["region"], out_dir=tmp_path)
