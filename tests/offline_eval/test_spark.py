"""The evaluation on a real local Spark equals the single-node one, also when a task fails
and Spark retries it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offline_eval import DEFAULT_ESTIMATORS
from offline_eval.partitioned import PartitionJob, evaluate_partitions
from offline_eval.replay import Uniform
from tests.offline_eval.partitioned_log import assert_same_estimates, multi_day_log, one_pass

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")
if shutil.which("java") is None:  # .ci/run installs it
    pytest.skip("no Java runtime for Spark", allow_module_level=True)

from offline_eval.spark import evaluate_on_spark, spark_session  # noqa: E402

JOB = PartitionJob(estimators=DEFAULT_ESTIMATORS, policies={"uniform": Uniform()})


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    # local[2, 2]: two cores, and a failed task is tried once more
    session = spark_session("local[2, 2]", app_name="campopt-tests")
    yield session
    session.stop()


def test_spark_equals_one_pass_and_the_single_node_path(spark: Any, tmp_path: Path) -> None:
    data, targets = multi_day_log(tmp_path / "log")
    want = one_pass(data, targets)
    got = evaluate_on_spark(spark, tmp_path / "log", JOB)
    assert_same_estimates(got, want)
    assert_same_estimates(got, evaluate_partitions(tmp_path / "log", JOB))


class FailsOnce:
    """A replayed policy whose first call in partition 0 fails, as a lost executor would."""

    def __call__(self, data: Any) -> Any:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None and context.partitionId() == 0 and context.attemptNumber() == 0:
            raise RuntimeError("executor lost")
        return Uniform()(data)


def test_a_retried_partition_counts_once(spark: Any, tmp_path: Path) -> None:
    data, targets = multi_day_log(tmp_path / "log", n=1200, seed=5)
    job = PartitionJob(estimators=DEFAULT_ESTIMATORS, policies={"uniform": FailsOnce()})
    got = evaluate_on_spark(spark, tmp_path / "log", job)
    assert_same_estimates(got, one_pass(data, targets))
    assert got["uniform"]["IPS"].n == data.n
