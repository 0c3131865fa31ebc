"""`campopt evaluate` and `campopt logs export`: offline evaluation wired to the database,
the registry and files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
from sqlalchemy import Engine

from campaign_db.catalog import read_snapshot
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import session_scope
from offline_eval import BestFixedAction, Uniform, cross_fit, evaluate, fixed_action_values, replay
from offline_eval.io import (
    from_arrow,
    read_parquet_table,
    targets_from_arrow,
    write_dsjson,
    write_parquet,
)
from offline_eval.report import ReportDict, TrainingWindow
from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.values import FrameStatus
from optimizer.features import ActionLines
from optimizer.offline import (
    SEGMENTS,
    DecisionLogs,
    VWRewardModel,
    load_decision_logs,
    offer_costs,
    replay_policies,
    reward_features,
    train_policies,
    training_window,
    version_cutoff,
)
from optimizer.policy import BanditPolicy
from optimizer.ports.decision_logs import LogFilters
from optimizer.serving import ModelSource

Step = Callable[[str], None]


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
) -> ReportDict:
    """Evaluate, on the latest `later_share` of the logs: the logging policy, uniform random,
    the best fixed combination (chosen on the earlier slice), each frame's spec trained
    off-policy on the earlier slice, and the serving champions (when a registry answers).

    No policy is evaluated on decisions it learned from: the evaluation rows are those after
    the champions' training cut-offs too; a champion that learned from all of them (an online
    checkpoint that consumed every final reward) is left out, and the report says why."""
    snapshot = _snapshot(engine)
    lines = ActionLines(snapshot)
    step("loading the decision logs")
    logs = load_decision_logs(SqlDecisionLogs(engine), snapshot, filters)
    earlier, later = logs.split(later_share)
    latest: dict[str, Any] = {}
    for frame in sorted(snapshot.frames, key=lambda f: f.version):
        latest[frame.key] = frame
    floors = {
        key: f.spec.policy_spec().floor_share(f.spec.exploration) for key, f in latest.items()
    }
    limits = {key: f.spec.guardrails.max_offer_cost_per_decision for key, f in latest.items()}
    training = {"trained_spec": training_window(earlier.cutoff())}
    champions: dict[str, BanditPolicy] = {}
    if source is not None:
        step("finding the serving champions and what they were trained on")
        champions = _champions(source, latest.keys())
        if champions and all(str(k) in champions for k in set(later.frame_keys)):
            later, training["champion"], evaluable = _after_champions(later, champions, source)
            if not evaluable:
                champions = {}
        else:
            champions = {}
    costs = offer_costs(later, snapshot)
    policies: dict[str, np.ndarray[Any, Any]] = {
        "uniform": replay(later.data, policy=Uniform()),
    }
    values = fixed_action_values(earlier.data, min_count=5)
    if values:
        policies["best_fixed"] = replay(later.data, policy=BestFixedAction(values))
    step("training each frame's spec on the earlier slice")
    trained = train_policies(earlier, {k: f.spec.policy_spec() for k, f in latest.items()}, lines)
    policies["trained_spec"] = replay_policies(
        later, trained, lines, floor_shares=floors, costs=costs, cost_limits=limits
    )
    if champions:
        step("replaying the serving champions")
        policies["champion"] = replay_policies(
            later, champions, lines, floor_shares=floors, costs=costs, cost_limits=limits
        )
    step("cross-fitting the reward model (VW regression, 5 folds)")
    predictions = cross_fit(
        later.data, features=reward_features(later, snapshot), model=VWRewardModel
    ).predictions
    step("estimating")
    return evaluate(
        later.data,
        policies,
        predictions=predictions,
        segments=[
            s for s in SEGMENTS if later.data.context is not None and s in later.data.context
        ],
        out_dir=out,
        fmt=fmt,
        training=training,
    )


def _after_champions(
    later: DecisionLogs, champions: dict[str, BanditPolicy], source: ModelSource
) -> tuple[DecisionLogs, TrainingWindow, bool]:
    """The rows no serving champion learned from, the champions' training window, and whether
    any row is left to evaluate them on."""
    keep = np.ones(later.data.n, dtype=bool)
    frames = later.frame_keys
    described = []
    for name, policy in champions.items():

        def tags_of(version: str, name: str = name) -> dict[str, str] | None:
            return _tags(source, name, version)

        cutoff = version_cutoff(policy.version, tags_of)
        rows = np.flatnonzero(frames == name)
        keep[rows] &= later.take(rows).unseen(cutoff)
        described.append(f"{name}:{policy.version} on {cutoff.describe() if cutoff else '?'}")
    trained = "; ".join(described)
    if not keep.any():
        note = f"not evaluated: the champions learned from every evaluation decision ({trained})"
        return later, TrainingWindow(note=note), False
    return later.take(np.flatnonzero(keep)), TrainingWindow(until=trained), True


def _tags(source: ModelSource, name: str, version: str) -> dict[str, str] | None:
    """A registry version's tags; None for sources without tags or when it cannot be read."""
    info = getattr(source, "version_info", None)
    if info is None:
        return None
    try:
        return dict(info(name, version).tags)
    except Exception:
        return None


def _champions(source: ModelSource, names: Any) -> dict[str, BanditPolicy]:
    found = {}
    for name in names:
        try:
            version = source.serving_version(name)
            if version is None:
                continue
            stored = source.load(name, version)
        except Exception:
            continue
        found[name] = BanditPolicy.from_stored(stored, version=version)
    return found


def evaluate_file(path: Path, *, out: Path, fmt: Literal["markdown", "html"]) -> ReportDict:
    """Evaluate the `target__<name>` columns of a log in the documented flat layout (a Parquet
    file or a date-partitioned folder)."""
    table = read_parquet_table(path) if path.is_dir() else pq.read_table(path)
    targets = targets_from_arrow(table)
    if not targets:
        raise ValueError(f"{path}: no target__<name> columns to evaluate")
    data = from_arrow(table)
    segments = [s for s in SEGMENTS if s in table.schema.names]
    return evaluate(data, targets, segments=segments, out_dir=out, fmt=fmt)


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


def summary_lines(report: ReportDict) -> list[str]:
    """A few lines for the terminal: each policy's primary estimate with its interval."""

    def line(name: str, estimate: Any) -> str:
        clipped = " clipped to the reward range" if estimate.get("clipped") else ""
        return (
            f"{name:14s} {estimate['estimator']:>9s} {_number(estimate['value'])} "
            f"[{_number(estimate['ci_low'])}, {_number(estimate['ci_high'])}]{clipped}"
        )

    out = [line("logging", report["logging"])]
    for entry in report["policies"]:
        shown = [e for e in entry["estimates"] if e["estimator"] in ("SNIPS", "DR")]
        out.extend(line(entry["policy"], estimate) for estimate in shown or entry["estimates"][:1])
    return out


def _number(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:.4f}"


def dump(report: ReportDict) -> str:
    return json.dumps(report, indent=2, default=str)
