"""Reports: one call writes the report, estimates.json and plots; segments add up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from offline_eval.report import TrainingWindow, segment_estimates
from offline_eval.synthetic import SyntheticEnvironment, SyntheticSetting
from tests.offline_eval.helpers import random_log


def evaluate_dict(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The report as estimates.json holds it."""
    return evaluate(*args, **kwargs).to_dict()


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
    report = evaluate_dict(
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
    report = evaluate_dict(data, {"target": data.target_probabilities}, out_dir=tmp_path)
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
        evaluate_dict(data, {"t": data.target_probabilities}, segments=["region"], out_dir=tmp_path)


def test_report_says_when_an_estimate_was_clipped_to_the_reward_range(tmp_path: Path) -> None:
    """The target always picks the rarely logged action that converted: IPS overshoots 1."""
    n = 40
    offsets = np.arange(0, 2 * n + 1, 2)
    chosen = np.array([0] * 5 + [1] * (n - 5))
    logging = np.tile([0.1, 0.9], n)
    data = LoggedBandit(
        offsets=offsets,
        action_ids=np.tile([0, 1], n),
        chosen_index=chosen,
        logged_probability=logging[offsets[:-1] + chosen],
        reward=np.where(chosen == 0, 1.0, 0.0),
        logging_probabilities=logging,
        reward_range=(0.0, 1.0),
    )
    report = evaluate_dict(data, {"lucky": np.tile([1.0, 0.0], n)}, out_dir=tmp_path)
    (ips,) = [e for e in report["policies"][0]["estimates"] if e["estimator"] == "IPS"]
    assert ips["value"] == 1.0
    assert ips["clipped"] is True
    assert ips["raw_value"] is not None
    assert ips["raw_value"] > 1.0
    assert report["reward_range"] == [0.0, 1.0]
    assert any("lucky: IPS" in w and "clipped" in w for w in report["warnings"])
    assert "(clipped)" in (tmp_path / "report.md").read_text()


def test_segments_with_a_small_effective_sample_size_are_warned_about(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    data = random_log(rng, 600)
    report = evaluate_dict(
        data,
        {"t": data.target_probabilities},
        segments=["health_class"],
        out_dir=tmp_path,
        min_effective_sample_size=120.0,
    )
    small = {
        s["segment"]
        for s in report["segments"]
        if s["policy"] == "t" and s["estimates"][0]["diagnostics"]["effective_sample_size"] < 120
    }
    assert small, "the test log should have segments below the threshold"
    for segment in "ABCD":
        warned = any(
            w.startswith(f"t, health_class={segment}: effective sample size")
            for w in report["warnings"]
        )
        assert warned == (segment in small), segment


def test_report_names_the_training_and_the_evaluation_windows(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    stamps = np.datetime64("2026-11-10T00:00:00") + np.arange(200) * np.timedelta64(1, "h")
    data = random_log(rng, 200, timestamp=stamps)
    report = evaluate_dict(
        data,
        {"candidate": data.target_probabilities},
        out_dir=tmp_path,
        training={
            "candidate": TrainingWindow(
                trained_from="2026-11-01T00:00:00", until="2026-11-09T23:00:00", rows=180
            )
        },
    )
    assert report["evaluated_from"] == "2026-11-10T00:00:00+00:00"
    assert report["evaluated_to"] == "2026-11-18T07:00:00+00:00"
    (window,) = report["windows"]
    assert window["policy"] == "candidate"
    assert window["trained_until"] == "2026-11-09T23:00:00"
    assert window["trained_rows"] == 180
    assert window["evaluated_rows"] == 200
    text = (tmp_path / "report.md").read_text()
    assert "until 2026-11-09T23:00:00" in text
    assert "from 2026-11-10T00:00:00" in text
