"""Accuracy and interval coverage of the offline estimators on a synthetic log with known truth.

The generator (offline_eval.synthetic) mirrors Open Bandit Pipeline's synthetic setup:
`SyntheticBanditDataset(n_actions=K, dim_context=5, reward_function=logistic_reward_function,
beta=5)` (one-hot action contexts, uniform(-1, 1) coefficients, softmax behaviour policy over the
expected reward with inverse temperature beta) and an evaluation policy
`gen_eps_greedy(expected_reward, eps=0.3)`. Differences: contexts come from a finite population
of 50,000 customers so the true value is exact (obp averages over the logged contexts instead),
and obp's z-score step, which only shifts its logits by a constant, is left out.

Reported:
1. mean relative error |V_hat - V| / V over 10 seeds at n = 10,000 for K = 10 and 100 actions;
   DM/DR/SNDR/Switch-DR use 5-fold cross-fitted LogisticRewardModel predictions;
2. over 200 seeds (n = 10,000): the share of nominal 95 % analytic intervals that cover V, and
   the mean ratio of their width to a plain Gaussian interval, defined as
   mean(v) ± z sd(v) / sqrt(n) of the naive per-round vector v (w r for IPS, w r / mean(w) for
   SNIPS, DM_i + w (r - q_hat) / mean(w) for SNDR; the estimator's own vector otherwise). For
   the linear estimators the two coincide (ratio 1); for the self-normalised ones the analytic
   interval is the delta-method one;
3. IPS bias: mean error over the 200 seeds and its standard error.

    python -m benchmarks.offline_accuracy [--seeds 10] [--coverage-seeds 200] [--workers 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from statistics import NormalDist

import numpy as np

from offline_eval import DM, DR, IPS, SNDR, SNIPS, Estimator, SwitchDR, cross_fit
from offline_eval.synthetic import SyntheticEnvironment, SyntheticSetting

N = 10_000
ESTIMATORS: tuple[Estimator, ...] = (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR())
NAMES = [e.name for e in ESTIMATORS]
Z = NormalDist().inv_cdf(0.975)


def plain_vector(
    name: str, w: np.ndarray, r: np.ndarray, dm: np.ndarray, q: np.ndarray
) -> np.ndarray:
    """The naive per-round vector whose mean is the estimate (for the plain Gaussian interval)."""
    if name == "SNIPS":
        return w * r / w.mean()
    if name == "SNDR":
        return dm + w * (r - q) / w.mean()
    raise ValueError(name)


def one_seed(args: tuple[int, int]) -> dict[str, np.ndarray]:
    """Relative error, coverage, width ratio and signed error of every estimator for one seed."""
    n_actions, seed = args
    rng = np.random.default_rng([n_actions, seed])
    env = SyntheticEnvironment(SyntheticSetting(n_actions=n_actions), rng)
    sample = env.sample(N, rng)
    data, truth = sample.data, sample.true_value
    predictions = cross_fit(data, features=sample.features, rng=rng).predictions
    w, r = data.importance_weights, data.reward
    q = predictions[data.chosen_flat_index]
    dm = DM().contributions(data, predictions=predictions)
    rel, cover, ratio, signed = [], [], [], []
    for estimator in ESTIMATORS:
        est = estimator.estimate(data, predictions=predictions)
        rel.append(abs(est.value - truth) / truth)
        signed.append(est.value - truth)
        cover.append(est.ci_low <= truth <= est.ci_high)
        if estimator.self_normalized:
            v = plain_vector(estimator.name, w, r, dm, q)
            plain = 2 * Z * v.std(ddof=1) / np.sqrt(data.n)
        else:
            plain = (
                2
                * Z
                * estimator.contributions(data, predictions=predictions).std(ddof=1)
                / np.sqrt(data.n)
            )
        ratio.append(est.width / plain)
    return {
        "relative_error": np.array(rel),
        "covered": np.array(cover, dtype=float),
        "width_ratio": np.array(ratio),
        "error": np.array(signed),
    }


def run(n_actions: int, seeds: int, workers: int) -> dict[str, np.ndarray]:
    jobs = [(n_actions, s) for s in range(seeds)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one_seed, jobs, chunksize=4))
    return {key: np.stack([r[key] for r in results]) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--coverage-seeds", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    print("Setting: n = 10,000 logged decisions, 5 context features, binary logistic reward,")
    print("softmax(5 q) logging policy, 0.3-greedy target on the true q; truth exact.\n")
    accuracy: dict[int, np.ndarray] = {}
    coverage: dict[int, dict[str, np.ndarray]] = {}
    for k in (10, 100):
        started = time.perf_counter()
        coverage[k] = run(k, max(args.coverage_seeds, args.seeds), args.workers)
        accuracy[k] = coverage[k]["relative_error"][: args.seeds].mean(axis=0)
        elapsed = time.perf_counter() - started
        print(f"K = {k}: {max(args.coverage_seeds, args.seeds)} seeds in {elapsed:.0f} s")

    print(f"\nMean relative error over {args.seeds} seeds (n = {N:,})")
    print(f"{'estimator':<10} {'K=10':>8} {'K=100':>8}")
    for j, name in enumerate(NAMES):
        print(f"{name:<10} {accuracy[10][j]:>8.4f} {accuracy[100][j]:>8.4f}")
    for k in (10, 100):
        best = min(accuracy[k][NAMES.index("DR")], accuracy[k][NAMES.index("SNDR")])
        snips = accuracy[k][NAMES.index("SNIPS")]
        dr_verdict = "met" if best <= 0.01 else "MISSED"
        snips_verdict = "met" if snips <= 0.015 else "MISSED"
        print(
            f"K={k}: best of DR/SNDR {best:.4f} (target <= 0.010: {dr_verdict}),"
            f" SNIPS {snips:.4f} (target <= 0.015: {snips_verdict})"
        )

    seeds = args.coverage_seeds
    print(f"\nNominal 95 % analytic intervals over {seeds} seeds (n = {N:,})")
    header = f"{'estimator':<10} {'cover K=10':>11} {'cover K=100':>12}"
    print(f"{header} {'width/plain K=10':>17} {'K=100':>7}")
    for j, name in enumerate(NAMES):
        c10 = coverage[10]["covered"][:seeds, j].mean()
        c100 = coverage[100]["covered"][:seeds, j].mean()
        w10 = coverage[10]["width_ratio"][:seeds, j].mean()
        w100 = coverage[100]["width_ratio"][:seeds, j].mean()
        print(f"{name:<10} {c10:>11.3f} {c100:>12.3f} {w10:>17.3f} {w100:>7.3f}")
    print("(targets: coverage >= 0.93, width ratio <= 1.2; DM's interval ignores model error)")

    print(f"\nIPS bias over {seeds} seeds")
    for k in (10, 100):
        errors = coverage[k]["error"][:seeds, NAMES.index("IPS")]
        mean, se = errors.mean(), errors.std(ddof=1) / np.sqrt(len(errors))
        print(
            f"K={k}: mean error {mean:+.5f}, standard error {se:.5f}, "
            f"|mean| / SE = {abs(mean) / se:.2f}"
        )


if __name__ == "__main__":
    main()
