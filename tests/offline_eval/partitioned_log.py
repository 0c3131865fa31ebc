"""A multi-day log in the partitioned Parquet layout, with two target columns and reward-model
predictions, and the estimates of one pass over all of it: what a partitioned run must equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline_eval import DEFAULT_ESTIMATORS, LoggedBandit
from offline_eval.estimators import Estimate
from offline_eval.io import write_parquet
from offline_eval.replay import Uniform
from tests.offline_eval.helpers import random_distributions, random_log

START = np.datetime64("2026-11-01T00:00:00.000000")


def multi_day_log(
    path: Path, *, n: int = 3000, days: int = 7, seed: int = 11
) -> tuple[LoggedBandit, dict[str, np.ndarray]]:
    """Written under `path`, one file per day; returns the log and its targets."""
    rng = np.random.default_rng(seed)
    stamps = START + np.sort(rng.integers(0, days * 86_400, size=n)) * np.timedelta64(1, "s")
    data = random_log(rng, n, target=False, timestamp=stamps)
    data = data.with_predictions(rng.random(len(data.action_ids)))
    targets = {
        "candidate": random_distributions(rng, data.sizes),
        "greedy": random_distributions(rng, data.sizes) ** 4,
    }
    targets["greedy"] /= np.add.reduceat(targets["greedy"], data.offsets[:-1]).repeat(data.sizes)
    write_parquet(data, path, targets=targets)
    return data, targets


def one_pass(data: LoggedBandit, targets: dict[str, np.ndarray]) -> dict[str, dict[str, Estimate]]:
    """Every default estimator for each target and for uniform, over the whole log at once."""
    policies = {**targets, "uniform": Uniform()(data)}
    return {
        name: {e.name: e.estimate(data.with_target(probs)) for e in DEFAULT_ESTIMATORS}
        for name, probs in policies.items()
    }


def assert_same_estimates(
    got: dict[str, dict[str, Estimate]], want: dict[str, dict[str, Estimate]]
) -> None:
    assert got.keys() == want.keys()
    for policy, by_name in want.items():
        assert got[policy].keys() == by_name.keys()
        for name, estimate in by_name.items():
            other = got[policy][name]
            assert other.n == estimate.n
            for field in ("value", "ci_low", "ci_high", "std_error"):
                a, b = getattr(other, field), getattr(estimate, field)
                assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), (policy, name, field, a, b)
