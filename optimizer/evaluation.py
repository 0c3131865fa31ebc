"""Offline evaluation of VW policies on the decision logs: split, train, replay, cross-fit,
estimate. One pipeline serves `campopt evaluate` and the promotion gate of the lifecycle.

No policy is estimated on decisions it learned from. Candidates are trained on an earlier
slice and estimated on the later one; the later rows are further restricted to those after
every champion's training cut-off, and a champion that learned from all of them (an online
checkpoint that consumed every final reward) is not estimated: a note says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from offline_eval import (
    DR,
    SNIPS,
    BestFixedAction,
    Estimate,
    LoggedMean,
    Uniform,
    cross_fit,
    fixed_action_values,
    replay,
)
from offline_eval.estimators import Diagnostics
from offline_eval.gate import GateConfig, GateResult, Guardrail, promotion_gate
from offline_eval.report import EvaluationReport, ReportFormat, TrainingWindow, evaluate
from optimizer.core.catalog import CatalogSnapshot, FrameVersion
from optimizer.core.policy_spec import PolicySpec
from optimizer.features import ActionLines
from optimizer.offline import (
    SEGMENTS,
    DecisionLogs,
    FloatArray,
    TrainingCutoff,
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
from optimizer.ports.decision_logs import DecisionLogReader, LogFilters
from optimizer.serving import ModelSource

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Champion:
    """A serving policy and what it was trained on (None when its version does not say)."""

    policy: BanditPolicy
    cutoff: TrainingCutoff | None


@dataclass(frozen=True)
class FrameRules:
    """What serving applies per frame (exploration floor, expected offer cost limit), so that
    a replay estimates what would be served."""

    floor_shares: Mapping[str, float]
    cost_limits: Mapping[str, float]

    @classmethod
    def of_frames(cls, frames: Mapping[str, FrameVersion]) -> FrameRules:
        """Each frame with its own spec."""
        return cls(
            floor_shares={
                k: f.spec.policy_spec().floor_share(f.spec.exploration) for k, f in frames.items()
            },
            cost_limits={
                k: f.spec.guardrails.max_offer_cost_per_decision for k, f in frames.items()
            },
        )

    @classmethod
    def of_candidate(cls, frame: FrameVersion, spec: PolicySpec) -> FrameRules:
        """One frame with a candidate's spec."""
        return cls(
            floor_shares={frame.key: spec.floor_share(frame.spec.exploration)},
            cost_limits={frame.key: frame.spec.guardrails.max_offer_cost_per_decision},
        )


class Replay:
    """Each row's distribution under a policy per frame, over the logged candidates, capped by
    the frame's rules as serving caps it."""

    def __init__(
        self, logs: DecisionLogs, snapshot: CatalogSnapshot, lines: ActionLines, rules: FrameRules
    ) -> None:
        self.logs = logs
        self.lines = lines
        self.rules = rules
        self.costs = offer_costs(logs, snapshot)

    def __call__(self, policies: Mapping[str, BanditPolicy]) -> FloatArray:
        return replay_policies(
            self.logs,
            policies,
            self.lines,
            floor_shares=self.rules.floor_shares,
            costs=self.costs,
            cost_limits=self.rules.cost_limits,
        )


def unseen_by(
    logs: DecisionLogs, cutoffs: Mapping[str, TrainingCutoff | None]
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows the policy of their frame did not learn from (all rows of a frame whose policy's
    cut-off is unknown)."""
    keep = np.ones(logs.data.n, dtype=bool)
    frames = logs.frame_keys
    for name, cutoff in cutoffs.items():
        rows = np.flatnonzero(frames == name)
        keep[rows] &= logs.take(rows).unseen(cutoff)
    return keep


def reward_predictions(logs: DecisionLogs, snapshot: CatalogSnapshot) -> FloatArray:
    """Cross-fitted reward-model predictions (VW regression, 5 folds) for DM and DR."""
    predictions: FloatArray = cross_fit(
        logs.data, features=reward_features(logs, snapshot), model=VWRewardModel
    ).predictions
    return predictions


def segments_of(logs: DecisionLogs) -> list[str]:
    context = logs.data.context
    return [s for s in SEGMENTS if context is not None and s in context]


def latest_frames(snapshot: CatalogSnapshot) -> dict[str, FrameVersion]:
    """The newest version of every frame in the snapshot."""
    latest: dict[str, FrameVersion] = {}
    for frame in sorted(snapshot.frames, key=lambda f: f.version):
        latest[frame.key] = frame
    return latest


# --- comparing policies (`campopt evaluate`) ---------------------------------------------------


def serving_champions(source: ModelSource, names: Iterable[str]) -> dict[str, Champion]:
    """The policies serving now, with their cut-offs; a frame whose champion cannot be loaded
    has none."""
    found = {}
    for name in names:
        try:
            version = source.serving_version(name)
            if version is None:
                continue
            stored = source.load(name, version)
        except Exception:
            continue
        policy = BanditPolicy.from_stored(stored, version=version)

        def tags_of(v: str, name: str = name) -> dict[str, str] | None:
            return _tags(source, name, v)

        found[name] = Champion(policy, version_cutoff(version, tags_of))
    return found


def _tags(source: ModelSource, name: str, version: str) -> dict[str, str] | None:
    """A registry version's tags; None for sources without tags or when it cannot be read."""
    info = getattr(source, "version_info", None)
    if info is None:
        return None
    try:
        return dict(info(name, version).tags)
    except Exception:
        return None


def compare_policies(
    reader: DecisionLogReader,
    snapshot: CatalogSnapshot,
    *,
    filters: LogFilters,
    later_share: float,
    source: ModelSource | None,
    out: Path,
    fmt: ReportFormat,
    step: Step = _quiet,
) -> EvaluationReport:
    """Evaluate, on the latest `later_share` of the logs: the logging policy, uniform random,
    the best fixed combination (chosen on the earlier slice), each frame's spec trained
    off-policy on the earlier slice, and the serving champions (when `source` has them)."""
    lines = ActionLines(snapshot)
    step("loading the decision logs")
    logs = load_decision_logs(reader, snapshot, filters)
    earlier, later = logs.split(later_share)
    latest = latest_frames(snapshot)
    training = {"trained_spec": training_window(earlier.cutoff())}
    champions: dict[str, BanditPolicy] = {}
    if source is not None:
        step("finding the serving champions and what they were trained on")
        serving = serving_champions(source, latest.keys())
        if serving and all(str(k) in serving for k in set(later.frame_keys)):
            later, training["champion"], champions = _after_champions(later, serving)
    replayed = Replay(later, snapshot, lines, FrameRules.of_frames(latest))
    policies: dict[str, FloatArray] = {"uniform": replay(later.data, policy=Uniform())}
    values = fixed_action_values(earlier.data, min_count=5)
    if values:
        policies["best_fixed"] = replay(later.data, policy=BestFixedAction(values))
    step("training each frame's spec on the earlier slice")
    trained = train_policies(earlier, {k: f.spec.policy_spec() for k, f in latest.items()}, lines)
    policies["trained_spec"] = replayed(trained)
    if champions:
        step("replaying the serving champions")
        policies["champion"] = replayed(champions)
    step("cross-fitting the reward model (VW regression, 5 folds)")
    predictions = reward_predictions(later, snapshot)
    step("estimating")
    return evaluate(
        later.data,
        policies,
        predictions=predictions,
        segments=segments_of(later),
        out_dir=out,
        fmt=fmt,
        training=training,
    )


def _after_champions(
    later: DecisionLogs, champions: Mapping[str, Champion]
) -> tuple[DecisionLogs, TrainingWindow, dict[str, BanditPolicy]]:
    """The rows no champion learned from, the champions' training window, and the champions
    to replay on them (none when no row is left)."""
    keep = unseen_by(later, {name: c.cutoff for name, c in champions.items()})
    trained = "; ".join(
        f"{name}:{c.policy.version} on {c.cutoff.describe() if c.cutoff else '?'}"
        for name, c in champions.items()
    )
    if not keep.any():
        note = f"not evaluated: the champions learned from every evaluation decision ({trained})"
        return later, TrainingWindow(note=note), {}
    policies = {name: c.policy for name, c in champions.items()}
    return later.take(np.flatnonzero(keep)), TrainingWindow(until=trained), policies


# --- gating a candidate against the champion ---------------------------------------------------


@dataclass(frozen=True)
class GateEvidence:
    """The gate's verdict and what it rests on: the estimates as metrics, the report files,
    and the rows both policies were estimated on."""

    gate: GateResult
    metrics: Mapping[str, float]
    files: Mapping[str, Path]
    evaluated: DecisionLogs


def gate_candidate(
    *,
    frame: FrameVersion,
    candidate: BanditPolicy,
    spec: PolicySpec,
    cutoff: TrainingCutoff | None,
    champion: Champion | None,
    later: DecisionLogs,
    snapshot: CatalogSnapshot,
    lines: ActionLines,
    estimator: Literal["SNIPS", "DR"],
    config: GateConfig,
    folder: Path,
) -> GateEvidence:
    """Gate the candidate on `later` (decisions it was not trained on), restricted to those
    after the champion's cut-off too; writes the report and gate.json into `folder`."""
    training = {"candidate": training_window(cutoff)}
    versus = None if champion is None else champion.policy
    if champion is not None:
        both = np.flatnonzero(later.unseen(champion.cutoff))
        if both.size:
            later = later.take(both)
            training["champion"] = training_window(champion.cutoff)
        else:
            learned = champion.cutoff.describe() if champion.cutoff else "unknown decisions"
            training["champion"] = training_window(
                champion.cutoff,
                note=(
                    f"version {champion.policy.version} learned from every evaluation decision "
                    f"({learned}); the logged mean of what served stands in for it"
                ),
            )
            versus = None
    replayed = Replay(later, snapshot, lines, FrameRules.of_candidate(frame, spec))
    target = replayed({frame.key: candidate})
    targets = {"candidate": target}
    predictions = None
    chosen: SNIPS | DR = SNIPS()
    if estimator == "DR":
        chosen = DR()
        predictions = reward_predictions(later, snapshot)
    candidate_estimate = chosen.estimate(later.data.with_target(target), predictions=predictions)
    if versus is not None:
        targets["champion"] = replayed({frame.key: versus})
        champion_estimate = chosen.estimate(
            later.data.with_target(targets["champion"]), predictions=predictions
        )
    else:
        champion_estimate = LoggedMean().estimate(later.data)
    guardrails = frame_guardrails(frame, later, target, replayed.costs)
    harm = {name: frame_harm(frame, later, t) for name, t in targets.items()}
    gate = promotion_gate(
        candidate=candidate_estimate,
        champion=champion_estimate,
        guardrails=guardrails,
        frame_violations=spec.frame_violations(frame.spec.exploration),
        config=config,
    )
    report = evaluate(
        later.data,
        targets,
        predictions=predictions,
        segments=segments_of(later),
        out_dir=folder,
        fmt="html",
        training=training,
    )
    (folder / "gate.json").write_text(json.dumps(gate.to_dict(), indent=2, default=str))
    metrics = {
        "candidate_value": candidate_estimate.value,
        "candidate_ci_low": candidate_estimate.ci_low,
        "candidate_ci_high": candidate_estimate.ci_high,
        "champion_value": champion_estimate.value,
        "effective_sample_size": candidate_estimate.diagnostics.effective_sample_size,
        **{f"guardrail_{g.name}": g.estimate.value for g in guardrails},
        **{f"{name}_harm_per_decision": h.value for name, h in harm.items() if h is not None},
        **_segment_metrics(report),
    }
    return GateEvidence(
        gate=gate,
        metrics={k: float(v) for k, v in metrics.items() if np.isfinite(v)},
        files={p.name: p for p in folder.iterdir() if p.is_file()},
        evaluated=later,
    )


def _segment_metrics(report: EvaluationReport) -> dict[str, float]:
    """The candidate's primary estimate per segment, as MLflow metric names allow."""
    metrics = {}
    for segment in report.segments:
        if segment.policy == "candidate" and segment.estimates:
            value = segment.estimates[0].value
            if math.isfinite(value):
                key = f"segment_{segment.column}_{segment.segment}"
                metrics[key.replace(" ", "_")] = value
    return metrics


def frame_guardrails(
    frame: FrameVersion, later: DecisionLogs, target: FloatArray, costs: FloatArray
) -> list[Guardrail]:
    """Unsubscribe and complaint rates and the expected offer cost per decision under the
    candidate, against the frame's thresholds."""
    data = later.data.with_target(target)
    if data.context is None:
        raise ValueError("context: the logs carry no outcome columns for the guardrails")
    limits = frame.spec.guardrails
    out = []
    for name, column, threshold in (
        ("unsubscribe_rate", "unsubscribed", limits.max_unsubscribe_rate),
        ("complaint_rate", "complained", limits.max_complaint_rate),
    ):
        outcome = data.with_reward(
            data.context[column].to_numpy(dtype=np.float64), reward_range=(0.0, 1.0)
        )
        out.append(Guardrail(name, SNIPS().estimate(outcome), threshold))
    harm = frame_harm(frame, later, target)
    if harm is not None and limits.max_harm_per_decision is not None:
        out.append(Guardrail("harm_per_decision", harm, limits.max_harm_per_decision))
    expected_cost = np.add.reduceat(target * costs, data.offsets[:-1])
    out.append(
        Guardrail(
            "offer_cost_per_decision",
            _mean_estimate(expected_cost, name="expected cost"),
            limits.max_offer_cost_per_decision,
        )
    )
    return out


def frame_harm(frame: FrameVersion, later: DecisionLogs, target: FloatArray) -> Estimate | None:
    """The harm per decision (`attribution.harm`: contacts, unsubscribes, complaints at the
    frame's prices) expected under `target`, estimated apart from the reward it is part of;
    None when the frame prices no harm."""
    harm = frame.spec.attribution.harm
    context = later.data.context
    if harm.most == 0 or context is None:
        return None
    contacted = (context["channel"] != "no_contact").to_numpy()
    per_decision = contacted * (
        harm.contact
        + harm.unsubscribe * context["unsubscribed"].to_numpy(dtype=np.float64)
        + harm.complaint * context["complained"].to_numpy(dtype=np.float64)
    )
    data = later.data.with_target(target).with_reward(per_decision, reward_range=(0.0, harm.most))
    return SNIPS().estimate(data)


def _mean_estimate(values: FloatArray, *, name: str) -> Estimate:
    """A plain mean with a normal interval, shaped as an estimate."""
    n = len(values)
    mean = float(np.mean(values)) if n else float("nan")
    se = float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(
        estimator=name,
        value=mean,
        ci_low=mean - 1.96 * se,
        ci_high=mean + 1.96 * se,
        std_error=se,
        alpha=0.05,
        n=n,
        interval_method="analytic",
        diagnostics=Diagnostics(
            effective_sample_size=float(n),
            max_importance_weight=1.0,
            zero_probability_rows=0,
            unscored_rows=0,
            model_rows=None,
            warning=None,
        ),
    )
