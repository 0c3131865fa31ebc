"""Speed and memory of the estimators on 10 million logged decisions with 10 candidates each.

Times IPS and SNIPS with analytic intervals and DR from given reward-model predictions, each on
a fresh copy of the target (so importance weights and support checks are included), plus
building the validated dataset and loading it back from partitioned Parquet. Peak memory is
the process's maximum RSS (resource.getrusage).

Side by side, the same arrays go through Open Bandit Pipeline (obp 0.5.7):
InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting and DoublyRobust
`estimate_policy_value`, in a subprocess of a separate virtualenv (obp needs numpy < 2). Its
intervals are bootstrap-only, so only its point estimates are timed. The obp venv was made with:

    python3 -m venv /work/obp-venv
    /work/obp-venv/bin/pip install "numpy<2" "scikit-learn<1.6" "pandas<2.3" "scipy<1.15" \
        seaborn tqdm pyyaml mypy-extensions torch==2.13.0
    /work/obp-venv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7

(obp 0.5.7's wheel pins torch==1.12 and Python < 3.11; its code runs on 3.11 with these.)

    python -m benchmarks.offline_speed [--rows 10000000] [--obp-python /work/obp-venv/bin/python]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from offline_eval import DR, IPS, SNIPS, Estimate, LoggedBandit
from offline_eval.io import read_parquet, write_parquet

K = 10
OBP_PYTHON = "/work/obp-venv/bin/python"

OBP_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from obp.ope import (
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
    )

    folder = sys.argv[1]
    load = lambda name: np.load(f"{folder}/{name}.npy")
    reward, action, pscore = load("reward"), load("action"), load("pscore")
    action_dist = load("action_dist")[:, :, None]
    q_hat = load("q_hat")[:, :, None]
    out = {}
    for name, estimator, extra in [
        ("IPS", InverseProbabilityWeighting(), {}),
        ("SNIPS", SelfNormalizedInverseProbabilityWeighting(), {}),
        ("DR", DoublyRobust(), {"estimated_rewards_by_reg_model": q_hat}),
    ]:
        start = time.perf_counter()
        value = estimator.estimate_policy_value(
            reward=reward, action=action, pscore=pscore, action_dist=action_dist, **extra
        )
        out[name] = {"seconds": time.perf_counter() - start, "value": float(value)}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    import obp
    out["version"] = obp.__version__
    print(json.dumps(out))
    """
)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def softmax_rows(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    probs = np.exp(scale * rng.standard_normal((n, K)))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def generate(n: int, seed: int) -> tuple[LoggedBandit, np.ndarray, float]:
    """A log with a known logging distribution, a target, and model predictions."""
    rng = np.random.default_rng(seed)
    logging = softmax_rows(rng, n, 0.5)
    target = softmax_rows(rng, n, 1.0)
    q_hat = rng.uniform(0.05, 0.6, size=(n, K))
    cumulative = np.cumsum(logging, axis=1)
    chosen = np.minimum((cumulative < rng.random(n)[:, None] * cumulative[:, -1:]).sum(1), K - 1)
    rows = np.arange(n)
    reward = (rng.random(n) < q_hat[rows, chosen]).astype(np.float64)
    seconds = np.sort(rng.integers(0, 30 * 86400, size=n)).astype("timedelta64[s]")
    start = time.perf_counter()
    data = LoggedBandit(
        offsets=np.arange(n + 1, dtype=np.int64) * K,
        action_ids=np.tile(np.arange(K, dtype=np.int32), n),
        chosen_index=chosen.astype(np.int32),
        logged_probability=logging[rows, chosen],
        reward=reward,
        logging_probabilities=logging.reshape(-1),
        target_probabilities=target.reshape(-1),
        reward_predictions=q_hat.reshape(-1),
        timestamp=np.datetime64("2026-10-01T00:00:00", "us") + seconds,
        reward_range=(0.0, 1.0),
    )
    return data, q_hat, time.perf_counter() - start


def time_estimators(data: LoggedBandit) -> list[tuple[str, float, float, Estimate]]:
    """Per estimator: seconds to attach and validate the target (what replaying a new policy
    costs) and seconds for the estimate itself on that fresh copy (weights and support checks
    computed inside, nothing cached from an earlier estimator)."""
    target = np.asarray(data.target_probabilities)
    results = []
    for estimator in (IPS(), SNIPS(), DR()):
        start = time.perf_counter()
        fresh = data.with_target(target)
        validate = time.perf_counter() - start
        start = time.perf_counter()
        estimate = estimator.estimate(fresh)
        results.append((estimator.name, time.perf_counter() - start, validate, estimate))
    return results


def run_obp(data: LoggedBandit, q_hat: np.ndarray, obp_python: str) -> dict[str, Any] | None:
    if not Path(obp_python).exists():
        return None
    folder = Path(tempfile.mkdtemp(prefix="obp-arrays-"))
    try:
        np.save(folder / "reward", np.asarray(data.reward))
        np.save(folder / "action", np.asarray(data.chosen_index, dtype=np.int64))
        np.save(folder / "pscore", np.asarray(data.logged_probability))
        np.save(folder / "action_dist", np.asarray(data.target_probabilities).reshape(-1, K))
        np.save(folder / "q_hat", q_hat)
        script = folder / "run_obp.py"
        script.write_text(OBP_SCRIPT)
        completed = subprocess.run(
            [obp_python, str(script), str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            print(f"obp run failed:\n{completed.stderr[-2000:]}")
            return None
        result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--obp-python", default=OBP_PYTHON)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n = args.rows
    data, q_hat, build_seconds = generate(n, args.seed)
    print(f"{n:,} logged decisions x {K} candidates; built and validated in {build_seconds:.2f} s")

    runs = time_estimators(data)
    ours_peak = peak_rss_gb()

    obp = run_obp(data, q_hat, args.obp_python)
    del q_hat
    gc.collect()

    print()
    print(
        f"{'estimator':<10} {'ours (s)':>9} {'+ target check':>15} {'obp (s)':>9}   "
        f"{'ours value [95 % CI]':<32} obp value"
    )
    for label, seconds, validate, estimate in runs:
        obp_seconds = f"{obp[label]['seconds']:.2f}" if obp else "-"
        obp_value = f"{obp[label]['value']:.5f}" if obp else "-"
        interval = f"{estimate.value:.5f} [{estimate.ci_low:.5f}, {estimate.ci_high:.5f}]"
        print(
            f"{label:<10} {seconds:>9.2f} {seconds + validate:>15.2f} {obp_seconds:>9}   "
            f"{interval:<32} {obp_value}"
        )
    print(
        "ours: estimate + analytic interval + diagnostics (weights, ESS, support checks) on a "
        "validated dataset;"
    )
    print(
        "      '+ target check' adds validating the target's probabilities (range, row sums), "
        "as replaying a new policy does."
    )
    print(
        "obp: estimate_policy_value only (its intervals are bootstrap); includes its own input "
        "checks."
    )
    if obp:
        print(
            f"obp {obp['version']} ran in {args.obp_python} (numpy < 2), arrays passed as .npy; "
            f"its peak RSS {obp['peak_rss_gb']:.2f} GB"
        )
    else:
        print(f"obp not run: no interpreter at {args.obp_python} (see the module docstring).")

    folder = Path(tempfile.mkdtemp(prefix="offline-parquet-"))
    try:
        plain = LoggedBandit(
            offsets=data.offsets,
            action_ids=data.action_ids,
            chosen_index=data.chosen_index,
            logged_probability=data.logged_probability,
            reward=data.reward,
            logging_probabilities=data.logging_probabilities,
            target_probabilities=data.target_probabilities,
            timestamp=data.timestamp,
        )
        del data
        gc.collect()
        start = time.perf_counter()
        write_parquet(plain, folder / "log")
        write_seconds = time.perf_counter() - start
        del plain
        gc.collect()
        size_gb = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**30
        days = len(list((folder / "log").iterdir()))
        start = time.perf_counter()
        loaded = read_parquet(folder / "log", target="target")
        read_seconds = time.perf_counter() - start
        print()
        print(
            f"Parquet ({days} date partitions, {size_gb:.2f} GB, with logging distribution and "
            f"one target): write {write_seconds:.1f} s, load into a validated dataset "
            f"{read_seconds:.1f} s ({loaded.n:,} rows)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\nPeak RSS of this process: {peak_rss_gb():.2f} GB "
        f"(after the estimators: {ours_peak:.2f} GB)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
