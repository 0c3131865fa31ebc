"""Reports: estimates per policy and per segment, differences to the logging policy, and files.

Everything here is pure except `evaluate`, which also writes the report (Markdown or HTML),
`estimates.json` and PNG plots into a folder; the `campopt evaluate` command calls it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from offline_eval._arrays import FloatArray, IntArray
from offline_eval.dataset import LoggedBandit
from offline_eval.estimators import (
    DEFAULT_ESTIMATORS,
    IPS,
    SNIPS,
    Estimate,
    EstimateDict,
    Estimator,
    LoggedMean,
    VersusLogging,
    estimate_by_group,
)

ReportFormat = Literal["markdown", "html"]
LOGGING = "logging"
# Below this effective sample size a policy's estimate (overall or in a segment) earns a warning.
MIN_EFFECTIVE_SAMPLE_SIZE = 100.0
MISSING_SEGMENT = "(missing)"
_TEMPLATES = Path(__file__).parent / "templates"


class PolicyDict(TypedDict):
    policy: str
    estimates: list[EstimateDict]
    versus_logging: list[EstimateDict]


class SegmentDict(TypedDict):
    column: str
    segment: str
    policy: str
    estimates: list[EstimateDict]


class WindowDict(TypedDict):
    policy: str
    trained_from: str | None
    trained_until: str | None
    trained_rows: int | None
    evaluated_from: str | None
    evaluated_to: str | None
    evaluated_rows: int
    note: str


class ReportDict(TypedDict):
    n: int
    alpha: float
    reward_range: list[float] | None
    evaluated_from: str | None
    evaluated_to: str | None
    windows: list[WindowDict]
    logging: EstimateDict
    policies: list[PolicyDict]
    segments: list[SegmentDict]
    warnings: list[str]
    files: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class TrainingWindow:
    """The decisions a target policy learned from, as its producer recorded them (ISO times).

    A policy must not be evaluated on decisions it was trained on: the caller picks the
    evaluation log after `until`, and the report names both windows.
    """

    trained_from: str | None = None
    until: str | None = None
    rows: int | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class PolicyComparison:
    """One target policy: its value by every estimator and the difference to the logging
    policy (paired interval: positive means better than what was logged)."""

    policy: str
    estimates: tuple[Estimate, ...]
    versus_logging: tuple[Estimate, ...]

    def to_dict(self) -> PolicyDict:
        return PolicyDict(
            policy=self.policy,
            estimates=[e.to_dict() for e in self.estimates],
            versus_logging=[e.to_dict() for e in self.versus_logging],
        )


@dataclass(frozen=True, kw_only=True)
class SegmentEstimates:
    """Estimates of one policy (or the logging policy) within one segment of a context column."""

    column: str
    segment: str
    policy: str
    estimates: tuple[Estimate, ...]

    def to_dict(self) -> SegmentDict:
        return SegmentDict(
            column=self.column,
            segment=self.segment,
            policy=self.policy,
            estimates=[e.to_dict() for e in self.estimates],
        )


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    n: int
    alpha: float
    logging: Estimate
    policies: tuple[PolicyComparison, ...]
    segments: tuple[SegmentEstimates, ...]
    files: Mapping[str, str]
    reward_range: tuple[float, float] | None = None
    evaluated: tuple[str | None, str | None] = (None, None)
    training: Mapping[str, TrainingWindow] = field(default_factory=dict)
    min_effective_sample_size: float = MIN_EFFECTIVE_SAMPLE_SIZE

    @property
    def warnings(self) -> list[str]:
        """Weight diagnostics, point estimates that left the reward range (clipped), and every
        policy or segment whose effective sample size is too small to trust."""
        found: list[str] = []

        def add(message: str) -> None:
            if message not in found:
                found.append(message)

        for comparison in self.policies:
            for estimate in comparison.estimates:
                warning = estimate.diagnostics.warning
                if warning:
                    add(f"{comparison.policy}: {warning}")
            self._range_and_size(comparison.policy, comparison.estimates, add)
        for row in self.segments:
            if row.policy != LOGGING:
                label = f"{row.policy}, {row.column}={row.segment}"
                self._range_and_size(label, row.estimates, add)
        for policy, window in self.training.items():
            if window.note:
                add(f"{policy}: {window.note}")
        return found

    def _range_and_size(
        self, label: str, estimates: Sequence[Estimate], add: Callable[[str], None]
    ) -> None:
        for estimate in estimates:
            if estimate.raw is not None and estimate.value != estimate.raw[0]:
                add(f"{label}: {estimate.clip_note}")
        if not estimates:
            return
        ess = estimates[0].diagnostics.effective_sample_size
        if math.isfinite(ess) and ess < self.min_effective_sample_size:
            add(
                f"{label}: effective sample size {ess:.1f} of {estimates[0].n} decisions is "
                f"below {self.min_effective_sample_size:g}; its estimates are unreliable"
            )

    def windows(self) -> list[WindowDict]:
        low, high = self.evaluated
        return [
            WindowDict(
                policy=comparison.policy,
                trained_from=window.trained_from,
                trained_until=window.until,
                trained_rows=window.rows,
                evaluated_from=low,
                evaluated_to=high,
                evaluated_rows=self.n,
                note=window.note,
            )
            for comparison in self.policies
            if (window := self.training.get(comparison.policy)) is not None
        ]

    def to_dict(self) -> ReportDict:
        """The content of estimates.json."""
        return ReportDict(
            n=self.n,
            alpha=self.alpha,
            reward_range=None if self.reward_range is None else list(self.reward_range),
            evaluated_from=self.evaluated[0],
            evaluated_to=self.evaluated[1],
            windows=self.windows(),
            logging=self.logging.to_dict(),
            policies=[p.to_dict() for p in self.policies],
            segments=[s.to_dict() for s in self.segments],
            warnings=self.warnings,
            files=dict(self.files),
        )


def compare_policies(
    data: LoggedBandit,
    *,
    policies: Mapping[str, FloatArray],
    estimators: Sequence[Estimator],
    predictions: FloatArray | None = None,
) -> list[PolicyComparison]:
    """Every policy by every estimator, with its paired difference to the logging policy."""
    results: list[PolicyComparison] = []
    for name, target in policies.items():
        replayed = data.with_target(target)
        results.append(
            PolicyComparison(
                policy=name,
                estimates=tuple(e.estimate(replayed, predictions=predictions) for e in estimators),
                versus_logging=tuple(
                    VersusLogging(base=e).estimate(replayed, predictions=predictions)
                    for e in estimators
                ),
            )
        )
    return results


def segment_codes(data: LoggedBandit, column: str) -> tuple[IntArray, list[str]]:
    """Integer codes of a context column's values (sorted labels; missing values get a label)."""
    values = data.column(column)
    codes, labels = pd.factorize(values, sort=True, use_na_sentinel=True)
    names = [str(label) for label in labels]
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING_SEGMENT)
    return codes, names


def segment_estimates(
    data: LoggedBandit,
    *,
    by: str,
    policies: Mapping[str, FloatArray],
    estimators: Sequence[Estimator],
    predictions: FloatArray | None = None,
) -> list[SegmentEstimates]:
    """Estimates per segment of the context column `by` (health_class, channel, trigger, ...),
    for the logging policy and every target policy, each from one pass over the log."""
    codes, names = segment_codes(data, by)
    alpha = estimators[0].alpha if estimators else 0.05
    logged = estimate_by_group(LoggedMean(alpha=alpha), data, codes=codes, n_groups=len(names))
    rows = [
        SegmentEstimates(column=by, segment=name, policy=LOGGING, estimates=(logged[g],))
        for g, name in enumerate(names)
    ]
    for policy, target in policies.items():
        replayed = data.with_target(target)
        per_estimator = [
            estimate_by_group(
                e, replayed, codes=codes, n_groups=len(names), predictions=predictions
            )
            for e in estimators
        ]
        rows.extend(
            SegmentEstimates(
                column=by,
                segment=name,
                policy=policy,
                estimates=tuple(results[g] for results in per_estimator),
            )
            for g, name in enumerate(names)
        )
    return rows


# -- rendering ---------------------------------------------------------------------------------


def _environment(autoescape: bool) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html"]) if autoescape else False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["num"] = _number
    environment.filters["interval"] = _interval
    return environment


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _interval(estimate: EstimateDict) -> str:
    clipped = " (clipped)" if estimate.get("clipped") else ""
    return f"[{_number(estimate['ci_low'])}, {_number(estimate['ci_high'])}]{clipped}"


def render_markdown(report: ReportDict) -> str:
    return _environment(autoescape=False).get_template("report.md.j2").render(report=report)


def render_html(report: ReportDict) -> str:
    return _environment(autoescape=True).get_template("report.html.j2").render(report=report)


def plot_estimates(
    rows: Sequence[tuple[str, Estimate]],
    path: str | Path,
    *,
    title: str,
    reference: float | None = None,
) -> None:
    """Point estimates with interval bars, one per labelled row, saved as PNG (Agg, no GUI)."""
    labels = [label for label, _ in rows]
    values = np.array([e.value for _, e in rows], dtype=np.float64)
    low = np.array([e.ci_low for _, e in rows], dtype=np.float64)
    high = np.array([e.ci_high for _, e in rows], dtype=np.float64)
    errors = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
    figure = Figure(figsize=(7.5, 0.45 * len(rows) + 1.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    axes.errorbar(values, positions, xerr=errors, fmt="o", capsize=4, color="#1f5f8b")
    if reference is not None and math.isfinite(reference):
        axes.axvline(reference, color="#999999", linestyle="--", linewidth=1, label="logging")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel("estimated value (mean reward per decision)")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(str(path), dpi=110)


# -- the one-call entry point ------------------------------------------------------------------


def evaluate(
    dataset: LoggedBandit,
    policies: Mapping[str, FloatArray],
    *,
    estimators: Sequence[Estimator] | None = None,
    segments: Sequence[str] = (),
    predictions: FloatArray | None = None,
    out_dir: str | Path,
    fmt: ReportFormat = "markdown",
    training: Mapping[str, TrainingWindow] | None = None,
    min_effective_sample_size: float = MIN_EFFECTIVE_SAMPLE_SIZE,
) -> EvaluationReport:
    """Estimate every policy with every estimator, overall and per segment, and write
    report.md or report.html, estimates.json and PNG plots into `out_dir`.

    Without `estimators`, all six are used when reward-model predictions are available
    (`predictions` or the dataset's own), else IPS and SNIPS. `training` names, per policy,
    the decisions it learned from; the report names them next to the evaluation window (the
    dataset's first and last timestamp).
    """
    if fmt not in ("markdown", "html"):
        raise ValueError(f"fmt: must be 'markdown' or 'html', got {fmt!r}")
    if not policies:
        raise ValueError("policies: nothing to evaluate")
    has_model = predictions is not None or dataset.reward_predictions is not None
    chosen = tuple(estimators) if estimators else _default_estimators(has_model)
    alpha = chosen[0].alpha
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    comparisons = compare_policies(
        dataset, policies=policies, estimators=chosen, predictions=predictions
    )
    logging_estimate = LoggedMean(alpha=alpha).estimate(dataset)
    segment_rows: list[SegmentEstimates] = []
    for column in segments:
        segment_rows.extend(
            segment_estimates(
                dataset,
                by=column,
                policies=policies,
                estimators=chosen,
                predictions=predictions,
            )
        )

    files: dict[str, str] = {}
    primary = _primary_index(chosen)
    plot_rows = [(LOGGING, logging_estimate)] + [
        (c.policy, c.estimates[primary]) for c in comparisons
    ]
    plot_estimates(
        plot_rows,
        out / "policies.png",
        title=f"Policy values ({chosen[primary].name}, {1 - alpha:.0%} intervals)",
        reference=logging_estimate.value,
    )
    files["policies_plot"] = "policies.png"
    for column in segments:
        rows = [
            (
                f"{r.segment} / {r.policy}",
                r.estimates[0] if r.policy == LOGGING else r.estimates[primary],
            )
            for r in segment_rows
            if r.column == column
        ]
        name = f"segments_{_slug(column)}.png"
        plot_estimates(rows, out / name, title=f"By {column} ({chosen[primary].name})")
        files[f"segments_{column}_plot"] = name

    report_name = "report.md" if fmt == "markdown" else "report.html"
    files["report"] = report_name
    files["estimates"] = "estimates.json"
    result = EvaluationReport(
        n=dataset.n,
        alpha=alpha,
        logging=logging_estimate,
        policies=tuple(comparisons),
        segments=tuple(segment_rows),
        files=files,
        reward_range=logging_estimate.value_range,
        evaluated=_time_span(dataset),
        training=dict(training or {}),
        min_effective_sample_size=min_effective_sample_size,
    )
    report = result.to_dict()
    rendered = render_markdown(report) if fmt == "markdown" else render_html(report)
    (out / report_name).write_text(rendered, encoding="utf-8")
    (out / "estimates.json").write_text(
        json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return result


def _time_span(data: LoggedBandit) -> tuple[str | None, str | None]:
    if data.timestamp is None or len(data.timestamp) == 0:
        return None, None
    stamps = np.asarray(data.timestamp, dtype="datetime64[us]")

    def iso(value: np.datetime64) -> str:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC).isoformat()

    return iso(stamps.min()), iso(stamps.max())


def _default_estimators(has_model: bool) -> tuple[Estimator, ...]:
    return DEFAULT_ESTIMATORS if has_model else (IPS(), SNIPS())


def _primary_index(estimators: Sequence[Estimator]) -> int:
    """The estimator plotted: DR when present (robust), else SNIPS, else the first."""
    names = [e.name for e in estimators]
    for preferred in ("DR", "SNIPS"):
        if preferred in names:
            return names.index(preferred)
    return 0


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
