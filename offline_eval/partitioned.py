"""Estimates over a log too large for one pass in memory: accumulate per partition, then merge.

Every estimator's analytic estimate and interval are functions of sums (`Accumulator`), so a
log split into partitions is estimated by accumulating each partition on its own and adding
the sums: one Parquet file at a time here, one Spark partition in `offline_eval.spark`. Both
call `accumulate_table`, so no estimator is written twice. A partition's result depends only
on its rows and is returned, not added to shared state: a retried partition replaces its failed
attempt instead of counting twice. The merge costs O(policies x estimators), not O(rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from offline_eval.estimators import Accumulator, Estimate, Estimator
from offline_eval.io import DATE, from_arrow, targets_from_arrow
from offline_eval.replay import TargetPolicy, replay

Partial = dict[tuple[str, str], Accumulator]
"""Accumulators by (policy, estimator name)."""


@dataclass(frozen=True)
class PartitionJob:
    """What every partition computes: each estimator for each policy, where the policies are
    the log's `target__<name>` columns (when `use_targets`) and `policies`, replayed on the
    partition's rows. It travels to the executors, so everything in it must pickle."""

    estimators: tuple[Estimator, ...]
    policies: Mapping[str, TargetPolicy] = field(default_factory=dict)
    use_targets: bool = True
    reward_range: tuple[float, float] | None = None


def accumulate_table(table: pa.Table, job: PartitionJob) -> Partial:
    """One partition's accumulators (none for an empty partition)."""
    if DATE in table.schema.names:
        table = table.drop_columns([DATE])
    if table.num_rows == 0:
        return {}
    data = from_arrow(table, reward_range=job.reward_range)
    targets = dict(targets_from_arrow(table)) if job.use_targets else {}
    for name, policy in job.policies.items():
        if name in targets:
            raise ValueError(f"policies: {name!r} is also a target column of the log")
        targets[name] = replay(data, policy=policy)
    if not targets:
        raise ValueError("policies: nothing to evaluate (no target columns, no policies)")
    partial: Partial = {}
    for name, probabilities in targets.items():
        chunk = data.with_target(probabilities)
        for estimator in job.estimators:
            accumulator = Accumulator(estimator)
            accumulator.add(chunk)
            partial[(name, estimator.name)] = accumulator
    return partial


def merge(parts: Iterable[Partial]) -> Partial:
    """The sum of partitions' accumulators, key by key."""
    merged: Partial = {}
    for part in parts:
        for key, accumulator in part.items():
            if key in merged:
                merged[key].merge(accumulator)
            else:
                merged[key] = accumulator
    return merged


def estimates(partial: Partial) -> dict[str, dict[str, Estimate]]:
    """Estimates by policy, then estimator name."""
    if not partial:
        raise ValueError("log: no logged decisions to evaluate")
    out: dict[str, dict[str, Estimate]] = {}
    for (policy, name), accumulator in partial.items():
        out.setdefault(policy, {})[name] = accumulator.get()
    return out


def evaluate_partitions(path: str | Path, job: PartitionJob) -> dict[str, dict[str, Estimate]]:
    """Single node: the log under `path` (a Parquet file or a partitioned folder), one file at a
    time, so memory holds one partition and the sums."""
    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    return estimates(merge(accumulate_table(f.to_table(), job) for f in dataset.get_fragments()))
