"""The partitioned evaluation on Apache Spark (`pip install 'campaign-optimizer[spark]'`).

Spark reads the flat Parquet layout, and `mapInArrow` hands each partition's rows to
`offline_eval.partitioned.accumulate_table` as Arrow record batches (no pandas round trip of the
list columns); each partition returns its accumulators as one pickled row, and the driver merges
them. The job (estimators and replayed policies, a VW model's bytes among them) is broadcast
once per executor. A failed task is retried by Spark and its output replaces the failed
attempt's, so nothing counts twice.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from offline_eval.estimators import Estimate
from offline_eval.partitioned import PartitionJob, accumulate_table, estimates, merge

PARTIAL = "partial"


def spark_session(master: str = "local[2]", *, app_name: str = "campopt-evaluate") -> Any:
    """A Spark session with Arrow batches sized for the evaluation; local executors run this
    interpreter, so they import the same packages (a cluster's executors need the spark extra
    installed)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .getOrCreate()
    )


def evaluate_on_spark(
    spark: Any, path: str | Path, job: PartitionJob
) -> dict[str, dict[str, Estimate]]:
    """The same estimates as `offline_eval.partitioned.evaluate_partitions`, computed per Spark
    partition of the log under `path`."""
    from pyspark import cloudpickle

    frame = spark.read.parquet(str(path))
    # cloudpickle: a policy defined in a script (`__main__`) travels by value
    dumps: Any = cloudpickle.dumps
    shared = spark.sparkContext.broadcast(dumps(job))

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition_job: PartitionJob = pickle.loads(shared.value)
        collected = list(batches)
        if not collected:
            return
        partial = accumulate_table(pa.Table.from_batches(collected), partition_job)
        yield pa.RecordBatch.from_pydict({PARTIAL: [pickle.dumps(partial)]})

    rows = frame.mapInArrow(per_partition, f"{PARTIAL} binary").collect()
    shared.unpersist()
    return estimates(merge(pickle.loads(row[PARTIAL]) for row in rows))
