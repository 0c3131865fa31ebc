"""`campopt evaluate` and `campopt logs export` at the edge: the database and the registry
wired to the evaluation pipeline, files in and out, and what the terminal shows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from campaign_db.catalog import read_snapshot
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import Engine, session_scope
from offline_eval import Estimate
from offline_eval.io import (
    from_arrow,
    read_parquet_table,
    targets_from_arrow,
    write_dsjson,
    write_parquet,
)
from offline_eval.report import EvaluationReport, evaluate
from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.values import FrameStatus
from optimizer.evaluation import Step, compare_policies
from optimizer.offline import SEGMENTS, load_decision_logs
from optimizer.ports.decision_logs import LogFilters
from optimizer.serving import ModelSource


def _snapshot(engine: Engine) -> CatalogSnapshot:
    with session_scope(engine) as session:
        return read_snapshot(session, statuses=tuple(FrameStatus))


def evaluate_database(
    engine: Engine,
    *,
    filters: LogFilters,
    out: Path,
    fmt: Literal["markdown", "html"],
    later_share: float,
    source: ModelSource | None,
    step: Step = lambda _: None,
) -> EvaluationReport:
    """`compare_policies` on the database's logs, every frame version known."""
    return compare_policies(
        SqlDecisionLogs(engine),
        _snapshot(engine),
        filters=filters,
        later_share=later_share,
        source=source,
        out=out,
        fmt=fmt,
        step=step,
    )


def evaluate_file(path: Path, *, out: Path, fmt: Literal["markdown", "html"]) -> EvaluationReport:
    """Evaluate the `target__<name>` columns of a log in the documented flat layout (a Parquet
    file or a date-partitioned folder)."""
    table = read_parquet_table(path) if path.is_dir() else pq.read_table(path)
    targets = targets_from_arrow(table)
    if not targets:
        raise ValueError(f"{path}: no target__<name> columns to evaluate")
    data = from_arrow(table)
    segments = [s for s in SEGMENTS if s in table.schema.names]
    return evaluate(data, targets, segments=segments, out_dir=out, fmt=fmt)


def evaluate_file_partitioned(
    path: Path, *, out: Path, engine: Literal["partitions", "spark"], master: str = "local[2]"
) -> dict[str, dict[str, Estimate]]:
    """Every estimator for each `target__<name>` column and for uniform, accumulated per
    partition (file by file on this machine, or on Spark) and merged; estimates.json in `out`.
    For logs too large for one pass in memory; no plots, no segments."""
    import pyarrow.dataset as ds

    from offline_eval import DEFAULT_ESTIMATORS, IPS, SNIPS
    from offline_eval.io import PREDICTIONS
    from offline_eval.partitioned import PartitionJob, evaluate_partitions
    from offline_eval.replay import Uniform

    if not path.exists():
        raise ValueError(f"--log: {path} does not exist")
    names = ds.dataset(str(path), format="parquet", partitioning="hive").schema.names
    estimators = DEFAULT_ESTIMATORS if PREDICTIONS in names else (IPS(), SNIPS())
    job = PartitionJob(estimators=estimators, policies={"uniform": Uniform()})
    if engine == "spark":
        from offline_eval.spark import evaluate_on_spark, spark_session

        spark = spark_session(master)
        try:
            result = evaluate_on_spark(spark, path, job)
        finally:
            spark.stop()
    else:
        result = evaluate_partitions(path, job)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "engine": engine,
        "log": str(path),
        "policies": {
            policy: [e.to_dict() for e in by_name.values()] for policy, by_name in result.items()
        },
    }
    (out / "estimates.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return result


def export_logs(
    engine: Engine, *, filters: LogFilters, out: Path, fmt: Literal["parquet", "dsjson"]
) -> int:
    """Write the logs in the flat layout (Parquet, partitioned by day) or as VW DSJSON."""
    snapshot = _snapshot(engine)
    logs = load_decision_logs(SqlDecisionLogs(engine), snapshot, filters)
    if fmt == "parquet":
        write_parquet(logs.data, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            write_dsjson(
                logs.data,
                handle,
                context_features=[_dsjson_context(c) for c in logs.contexts],
                action_features=_dsjson_actions(snapshot),
            )
    return logs.data.n


def _dsjson_context(context: dict[str, Any]) -> dict[str, Any]:
    """The shared namespaces as DSJSON objects (customer, trigger, time)."""
    customer: dict[str, Any] = {
        "hc": str(context.get("health_class", "")),
        "lang": str(context.get("language", "")),
        "usage": float(context.get("usage_index") or 0.0),
    }
    if context.get("tenure_days") is not None:
        customer["tenure"] = float(context["tenure_days"]) / 365.0
    for name, value in (context.get("attributes") or {}).items():
        customer[name] = value
    return {
        "c": customer,
        "t": {"trigger": str(context.get("trigger", ""))},
        "h": {"hour": f"h{context.get('hour', 0)}", "weekday": f"wd{context.get('weekday', 0)}"},
    }


def _dsjson_actions(snapshot: CatalogSnapshot) -> dict[int, dict[str, Any]]:
    from optimizer.core.catalog import split_signature

    actions: dict[int, dict[str, Any]] = {}
    for signature, action_id in snapshot.actions.items():
        offer, text, channel, slot = split_signature(signature)
        actions[action_id] = {
            "o": {"offer": offer or "no_contact"},
            "x": {"text": text or ""},
            "n": {"channel": channel or ""},
            "s": {"send_time": slot or ""},
        }
    return actions


def summary_lines(report: EvaluationReport) -> list[str]:
    """A few lines for the terminal: each policy's primary estimate with its interval."""

    def line(name: str, estimate: Estimate) -> str:
        clipped = " clipped to the reward range" if estimate.clipped else ""
        return (
            f"{name:14s} {estimate.estimator:>9s} {_number(estimate.value)} "
            f"[{_number(estimate.ci_low)}, {_number(estimate.ci_high)}]{clipped}"
        )

    out = [line("logging", report.logging)]
    for entry in report.policies:
        shown = [e for e in entry.estimates if e.estimator in ("SNIPS", "DR")]
        out.extend(line(entry.policy, estimate) for estimate in shown or entry.estimates[:1])
    return out


def _number(value: float) -> str:
    return "   n/a" if not math.isfinite(value) else f"{value:.4f}"
