"""Partitioned offline evaluation: one process file by file against Spark local[N], same run.

Writes a synthetic log in the flat Parquet layout (one file per day, K candidates per decision,
reward-model predictions), then evaluates a replayed policy (epsilon-greedy on the reward
model) and uniform with all six estimators and their intervals, twice: `evaluate_partitions`
(one process, one file at a time) and `evaluate_on_spark` (one task per file). Prints the wall
times and their ratio, the per-partition cost, the merge cost and the single process's peak
memory, and checks that both give the same estimates.

    python -m benchmarks.spark_evaluation --rows 2000000 --candidates 10 --master 'local[2]'
"""

from __future__ import annotations

import argparse
import copy
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from offline_eval import DEFAULT_ESTIMATORS, LoggedBandit
from offline_eval.io import to_arrow
from offline_eval.partitioned import PartitionJob, accumulate_table, evaluate_partitions, merge
from offline_eval.replay import EpsilonGreedy, Uniform


def reward_model(data: LoggedBandit) -> np.ndarray:
    """The log's own reward-model predictions as the replayed policy's scores."""
    assert data.reward_predictions is not None
    return data.reward_predictions


def write_log(folder: Path, *, rows: int, candidates: int, days: int, seed: int) -> None:
    """`days` files of `rows / days` decisions, each with `candidates` candidates."""
    rng = np.random.default_rng(seed)
    per_day = rows // days
    for day in range(days):
        n = per_day
        offsets = np.arange(n + 1, dtype=np.int64) * candidates
        logits = rng.normal(size=n * candidates)
        logging = np.exp(logits).reshape(n, candidates)
        logging /= logging.sum(axis=1, keepdims=True)
        chosen = (logging.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
        chosen = np.minimum(chosen, candidates - 1)
        quality = 1.0 / (1.0 + np.exp(-rng.normal(-1.0, 1.0, size=(n, candidates))))
        reward = (rng.random(n) < quality[np.arange(n), chosen]).astype(float)
        data = LoggedBandit(
            offsets=offsets,
            action_ids=np.tile(np.arange(candidates, dtype=np.int32), n),
            chosen_index=chosen,
            logged_probability=logging[np.arange(n), chosen],
            reward=reward,
            logging_probabilities=logging.ravel(),
            reward_predictions=np.clip(quality + rng.normal(0, 0.05, quality.shape), 0, 1).ravel(),
        )
        table = to_arrow(data)
        part = folder / f"date=2026-11-{day + 1:02d}"
        part.mkdir(parents=True)
        ds.write_dataset(table, str(part), format="parquet", basename_template="part-{i}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    job = PartitionJob(
        estimators=DEFAULT_ESTIMATORS,
        policies={"greedy": EpsilonGreedy(scores=reward_model, epsilon=0.1), "uniform": Uniform()},
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "log"
        started = time.perf_counter()
        write_log(folder, rows=args.rows, candidates=args.candidates, days=args.days, seed=1)
        written = time.perf_counter() - started
        size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
        print(
            f"log: {args.rows:,} decisions x {args.candidates} candidates in {args.days} files, "
            f"{size / 1e6:.0f} MB, written in {written:.1f} s"
        )

        fragments = list(ds.dataset(str(folder), format="parquet").get_fragments())
        started = time.perf_counter()
        first = fragments[0].to_table()
        read = time.perf_counter() - started
        started = time.perf_counter()
        partial = accumulate_table(first, job)
        per_partition = time.perf_counter() - started
        parts = [copy.deepcopy(partial) for _ in range(1000)]
        started = time.perf_counter()
        merge(parts)
        merge_1000 = time.perf_counter() - started
        print(
            f"one partition ({first.num_rows:,} rows): read {read:.2f} s, accumulate "
            f"{per_partition:.2f} s ({per_partition / first.num_rows * 1e6:.2f} µs/row); "
            f"merging 1,000 partitions' accumulators: {merge_1000 * 1e3:.0f} ms"
        )

        started = time.perf_counter()
        single = evaluate_partitions(folder, job)
        single_s = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"single process, file by file: {single_s:.1f} s, peak memory {peak:.0f} MB")

        from offline_eval.spark import evaluate_on_spark, spark_session

        spark = spark_session(args.master, app_name="campopt-benchmark")
        try:
            started = time.perf_counter()
            distributed = evaluate_on_spark(spark, folder, job)
            spark_s = time.perf_counter() - started
        finally:
            spark.stop()
        print(f"Spark {args.master}: {spark_s:.1f} s (with its Python workers' start)")
        print(f"speed-up: {single_s / spark_s:.2f} x")
        worst = max(
            abs(distributed[p][e].value - single[p][e].value) for p in single for e in single[p]
        )
        print(f"largest difference between the two paths' estimates: {worst:.1e}")
        for policy in single:
            dr = single[policy]["DR"]
            print(f"  {policy:8s} DR {dr.value:.4f} [{dr.ci_low:.4f}, {dr.ci_high:.4f}]")


if __name__ == "__main__":
    main()
