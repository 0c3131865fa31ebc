"""Off-policy estimators with confidence intervals: one-pass functions and mergeable accumulators.

Every estimator reduces a log to a small matrix of per-round statistics S (m rows, one column per
decision) and a function g of their means: IPS is g(mean(w r)), SNIPS is mean(w r) / mean(w).
That one shape gives everything else:

- the value is g(S̄); the per-round contribution vector c_i = g(S̄) + ∇g(S̄)·(S_i - S̄) has the
  value as its mean, and its sample variance over n is the analytic (delta-method) variance, so
  self-normalised estimators get the ratio-estimator variance rather than the naive one;
- the bootstrap resamples columns of S and re-applies g (vectorised, seeded generator);
- an accumulator only needs n, ΣS and ΣSSᵀ, which add across chunks, so a streaming job or a
  map-reduce gets the same estimate and interval as one pass.

No policy can earn more than the best reward or less than the worst, yet IPS, DR and the normal
interval of any estimator can leave that range on small or heavy-weighted logs. Estimates are
therefore clipped to the reward range (the dataset's `reward_range`, else the observed rewards),
keeping the raw numbers and saying so (`Estimate.clipped`, `Estimate.raw`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import ClassVar, Literal, TypedDict

import numpy as np

from offline_eval._arrays import BoolArray, FloatArray, IntArray, row_dot
from offline_eval.dataset import LoggedBandit

IntervalMethod = Literal["analytic", "bootstrap"]

# Below this share of n, the effective sample size earns a warning in the diagnostics.
LOW_ESS_SHARE = 0.01
# Cells of the (resamples x rows) count matrix built per bootstrap block.
_BOOTSTRAP_CELLS = 1 << 22


class DiagnosticsDict(TypedDict):
    effective_sample_size: float | None
    max_importance_weight: float | None
    zero_probability_rows: int | None
    unscored_rows: int | None
    model_rows: int | None
    warning: str | None


class EstimateDict(TypedDict):
    estimator: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    std_error: float | None
    alpha: float
    n: int
    interval_method: str
    diagnostics: DiagnosticsDict
    value_range: list[float] | None
    clipped: bool
    raw_value: float | None
    raw_ci_low: float | None
    raw_ci_high: float | None


@dataclass(frozen=True, kw_only=True)
class Diagnostics:
    """How much the importance weights can be trusted.

    `zero_probability_rows` and `unscored_rows` count rows where the target policy puts mass on a
    candidate the logging policy gave probability 0 or never scored: no estimator can see those
    rewards through the weights, so the estimate is biased there. Both are None when the log has
    no per-candidate logging distribution to check against. `model_rows` counts rows that fell
    back to the reward model (Switch-DR).
    """

    effective_sample_size: float
    max_importance_weight: float
    zero_probability_rows: int | None
    unscored_rows: int | None
    model_rows: int | None
    warning: str | None

    def to_dict(self) -> DiagnosticsDict:
        return DiagnosticsDict(
            effective_sample_size=_json_float(self.effective_sample_size),
            max_importance_weight=_json_float(self.max_importance_weight),
            zero_probability_rows=self.zero_probability_rows,
            unscored_rows=self.unscored_rows,
            model_rows=self.model_rows,
            warning=self.warning,
        )


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """An estimated policy value with its (1 - alpha) confidence interval.

    `value_range` is the range any value can take (the reward range; for a difference of two
    policies, its width either way). When the estimate or its interval left it, value and
    interval are clipped to it and `raw` keeps (value, ci_low, ci_high) as computed;
    `std_error` is always the raw one.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    alpha: float
    n: int
    interval_method: str
    diagnostics: Diagnostics
    value_range: tuple[float, float] | None = None
    raw: tuple[float, float, float] | None = None

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

    @property
    def clipped(self) -> bool:
        return self.raw is not None

    @property
    def clip_note(self) -> str | None:
        """One sentence on what was clipped, for reports; None when nothing was."""
        if self.raw is None or self.value_range is None:
            return None
        value, low, high = self.raw
        return (
            f"{self.estimator} {value:.4f} [{low:.4f}, {high:.4f}] leaves the possible range "
            f"[{self.value_range[0]:g}, {self.value_range[1]:g}]; clipped to {self.value:.4f} "
            f"[{self.ci_low:.4f}, {self.ci_high:.4f}]"
        )

    def to_dict(self) -> EstimateDict:
        """JSON-serialisable; non-finite numbers become None."""
        return EstimateDict(
            estimator=self.estimator,
            value=_json_float(self.value),
            ci_low=_json_float(self.ci_low),
            ci_high=_json_float(self.ci_high),
            std_error=_json_float(self.std_error),
            alpha=self.alpha,
            n=self.n,
            interval_method=self.interval_method,
            diagnostics=self.diagnostics.to_dict(),
            value_range=None if self.value_range is None else list(self.value_range),
            clipped=self.clipped,
            raw_value=None if self.raw is None else _json_float(self.raw[0]),
            raw_ci_low=None if self.raw is None else _json_float(self.raw[1]),
            raw_ci_high=None if self.raw is None else _json_float(self.raw[2]),
        )


def clip_to_range(estimate: Estimate, value_range: tuple[float, float]) -> Estimate:
    """The estimate with value and interval inside `value_range`, the raw numbers kept when
    anything had to move."""
    low, high = value_range
    raw = (estimate.value, estimate.ci_low, estimate.ci_high)
    clipped = tuple(min(max(x, low), high) if math.isfinite(x) else x for x in raw)
    if clipped == raw:
        return replace(estimate, value_range=value_range)
    value, ci_low, ci_high = clipped
    return replace(
        estimate,
        value=value,
        ci_low=ci_low,
        ci_high=ci_high,
        value_range=value_range,
        raw=estimate.raw or raw,
    )


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class _Rounds:
    """Per-round statistics of one log under one estimator, before any summing."""

    stats: FloatArray  # (m, n)
    weights: FloatArray  # (n,)
    zero_rows: BoolArray | None
    unscored_rows: BoolArray | None
    model_rows: BoolArray | None
    rewards: FloatArray | None = None  # (n,), for the observed reward range
    reward_range: tuple[float, float] | None = None  # the dataset's, when it has one

    def _range(self, rewards: FloatArray | None) -> tuple[float, float]:
        if self.reward_range is not None:
            return self.reward_range
        if rewards is None or rewards.size == 0:
            return (math.inf, -math.inf)
        return (float(rewards.min()), float(rewards.max()))

    def moments(self) -> _Moments:
        stats = self.stats
        reward_low, reward_high = self._range(self.rewards)
        return _Moments(
            reward_low=reward_low,
            reward_high=reward_high,
            n=stats.shape[1],
            sums=stats.sum(axis=1),
            cross=stats @ stats.T,
            weight_sum=float(self.weights.sum()),
            weight_sq_sum=float(np.dot(self.weights, self.weights)),
            weight_max=float(self.weights.max()) if self.weights.size else 0.0,
            zero_rows=_count(self.zero_rows),
            unscored_rows=_count(self.unscored_rows),
            model_rows=_count(self.model_rows),
        )

    def grouped_moments(self, codes: IntArray, n_groups: int) -> list[_Moments]:
        """Moments of every group at once (bincount per statistic and per product)."""
        stats = self.stats
        m = stats.shape[0]
        counts = np.bincount(codes, minlength=n_groups)
        sums = np.stack([np.bincount(codes, stats[j], n_groups) for j in range(m)], axis=1)
        cross = np.empty((n_groups, m, m))
        for j in range(m):
            for k in range(j, m):
                cross[:, j, k] = cross[:, k, j] = np.bincount(codes, stats[j] * stats[k], n_groups)
        weight_sum = np.bincount(codes, self.weights, n_groups)
        weight_sq = np.bincount(codes, self.weights * self.weights, n_groups)
        weight_max = np.zeros(n_groups)
        np.maximum.at(weight_max, codes, self.weights)
        flags = [
            None if f is None else np.bincount(codes, f, n_groups)
            for f in (self.zero_rows, self.unscored_rows, self.model_rows)
        ]
        ranges = [
            self._range(None if self.rewards is None else self.rewards[codes == g])
            for g in range(n_groups)
        ]
        return [
            _Moments(
                reward_low=ranges[g][0],
                reward_high=ranges[g][1],
                n=int(counts[g]),
                sums=sums[g],
                cross=cross[g],
                weight_sum=float(weight_sum[g]),
                weight_sq_sum=float(weight_sq[g]),
                weight_max=float(weight_max[g]),
                zero_rows=None if flags[0] is None else int(flags[0][g]),
                unscored_rows=None if flags[1] is None else int(flags[1][g]),
                model_rows=None if flags[2] is None else int(flags[2][g]),
            )
            for g in range(n_groups)
        ]


def _count(flags: BoolArray | None) -> int | None:
    return None if flags is None else int(np.count_nonzero(flags))


def _add_optional(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


@dataclass(frozen=True, eq=False)
class _Moments:
    """Sums and counts that determine an estimate and its analytic interval; they add up."""

    n: int
    sums: FloatArray  # (m,)
    cross: FloatArray  # (m, m)
    weight_sum: float
    weight_sq_sum: float
    weight_max: float
    zero_rows: int | None
    unscored_rows: int | None
    model_rows: int | None
    reward_low: float = math.inf
    reward_high: float = -math.inf

    @property
    def reward_range(self) -> tuple[float, float] | None:
        if self.reward_low > self.reward_high:
            return None
        return (self.reward_low, self.reward_high)

    def __add__(self, other: _Moments) -> _Moments:
        return _Moments(
            reward_low=min(self.reward_low, other.reward_low),
            reward_high=max(self.reward_high, other.reward_high),
            n=self.n + other.n,
            sums=self.sums + other.sums,
            cross=self.cross + other.cross,
            weight_sum=self.weight_sum + other.weight_sum,
            weight_sq_sum=self.weight_sq_sum + other.weight_sq_sum,
            weight_max=max(self.weight_max, other.weight_max),
            zero_rows=_add_optional(self.zero_rows, other.zero_rows),
            unscored_rows=_add_optional(self.unscored_rows, other.unscored_rows),
            model_rows=_add_optional(self.model_rows, other.model_rows),
        )

    def diagnostics(self) -> Diagnostics:
        ess = self.weight_sum**2 / self.weight_sq_sum if self.weight_sq_sum > 0 else 0.0
        warnings: list[str] = []
        if self.zero_rows:
            warnings.append(
                f"target policy puts mass on candidates logged with probability 0 in "
                f"{self.zero_rows} rows (their rewards are invisible to the weights)"
            )
        if self.unscored_rows:
            warnings.append(
                f"target policy puts mass on candidates the logging policy never scored in "
                f"{self.unscored_rows} rows (their rewards are invisible to the weights)"
            )
        if self.weight_sum == 0.0:
            warnings.append("no logged choice has a positive target probability")
        elif ess < LOW_ESS_SHARE * self.n:
            warnings.append(
                f"effective sample size {ess:.1f} is below {LOW_ESS_SHARE:.0%} of {self.n} rows"
            )
        return Diagnostics(
            effective_sample_size=ess,
            max_importance_weight=self.weight_max,
            zero_probability_rows=self.zero_rows,
            unscored_rows=self.unscored_rows,
            model_rows=self.model_rows,
            warning="; ".join(warnings) or None,
        )


@dataclass(frozen=True, kw_only=True)
class Estimator(ABC):
    """Shared shape of all estimators: parameters here, statistics in the subclasses."""

    alpha: float = 0.05
    interval: IntervalMethod = "analytic"
    n_bootstrap: int = 1000
    seed: int = 0
    clip: bool = True
    """Clip value and interval to the reward range (the raw numbers stay in `Estimate.raw`)."""

    name: ClassVar[str] = "estimator"
    uses_model: ClassVar[bool] = False
    self_normalized: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha: must be in (0, 1), got {self.alpha}")
        if self.interval not in ("analytic", "bootstrap"):
            raise ValueError(f"interval: must be 'analytic' or 'bootstrap', got {self.interval!r}")
        if self.n_bootstrap < 10:
            raise ValueError(f"n_bootstrap: must be at least 10, got {self.n_bootstrap}")

    # -- what a subclass defines ----------------------------------------------------------

    @abstractmethod
    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        """Per-round statistics, shape (m, n)."""

    def _combine(self, means: FloatArray) -> FloatArray:
        """The estimate as a function of the statistics' means, vectorised over leading axes."""
        combined: FloatArray = means[..., 0]
        return combined

    def _gradient(self, means: FloatArray) -> FloatArray:
        """∇g at the means (linear estimators: the single statistic's weight 1)."""
        return np.ones(1)

    def _model_rows(self, data: LoggedBandit) -> BoolArray | None:
        return None

    def _value_range(self, reward_range: tuple[float, float]) -> tuple[float, float]:
        """The range the estimated quantity can take given the reward range."""
        return reward_range

    # -- public API -------------------------------------------------------------------------

    @property
    def interval_method(self) -> str:
        if self.interval == "bootstrap":
            return f"bootstrap percentile ({self.n_bootstrap} resamples)"
        return "analytic: delta method" if self.self_normalized else "analytic: normal"

    def estimate(
        self,
        data: LoggedBandit,
        *,
        predictions: FloatArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> Estimate:
        """Estimate the target policy's value on `data`.

        `predictions` (reward-model predictions for every candidate) override the dataset's
        own; estimators without a reward model ignore them. `rng` drives the bootstrap and
        defaults to a generator seeded with `seed`.
        """
        rounds = self._rounds(data, predictions)
        return self._finish(rounds.moments(), rounds.stats, rng)

    def contributions(
        self, data: LoggedBandit, *, predictions: FloatArray | None = None
    ) -> FloatArray:
        """Per-round contributions: their mean is the estimate and their variance over n is the
        analytic variance (for self-normalised estimators, the linearised delta-method terms)."""
        stats = self._rounds(data, predictions).stats
        means = stats.mean(axis=1)
        value = float(self._combine(means))
        grad = self._gradient(means)
        contributions: FloatArray = value + grad @ (stats - means[:, None])
        return contributions

    def accumulator(self) -> Accumulator:
        """A mergeable accumulator for chunked or distributed logs (analytic interval only)."""
        if self.interval != "analytic":
            raise ValueError(
                "interval: accumulators support the analytic interval only; the bootstrap needs "
                "every round at once"
            )
        return Accumulator(self)

    # -- shared machinery -----------------------------------------------------------------

    def _rounds(self, data: LoggedBandit, predictions: FloatArray | None) -> _Rounds:
        weights = data.importance_weights
        stats = self._stats(data, self._resolve_predictions(data, predictions))
        flags = data.support_flags
        return _Rounds(
            stats=stats,
            weights=weights,
            zero_rows=None if flags is None else flags[0],
            unscored_rows=None if flags is None else flags[1],
            model_rows=self._model_rows(data),
            rewards=data.reward,
            reward_range=data.reward_range,
        )

    def _resolve_predictions(
        self, data: LoggedBandit, predictions: FloatArray | None
    ) -> FloatArray | None:
        if not self.uses_model:
            return None
        if predictions is not None:
            resolved = np.asarray(predictions, dtype=np.float64)
            if resolved.ndim != 1:
                raise ValueError(f"reward_predictions: expected a 1-D array, got {resolved.shape}")
            data._validate_predictions(resolved)
            return resolved
        if data.reward_predictions is None:
            raise ValueError(
                f"reward_predictions: {self.name} needs a reward-model prediction for every "
                "candidate; pass predictions= or use LoggedBandit.with_predictions()"
            )
        return data.reward_predictions

    def _value_and_error(self, moments: _Moments) -> tuple[float, float]:
        n = moments.n
        if n == 0:
            return float("nan"), float("nan")
        means = moments.sums / n
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(self._combine(means))
            if n < 2:
                return value, float("nan")
            grad = self._gradient(means)
            covariance = (moments.cross - n * np.outer(means, means)) / (n - 1)
            variance = float(grad @ covariance @ grad) / n
        return value, math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else math.nan

    def _finish(
        self, moments: _Moments, stats: FloatArray | None, rng: np.random.Generator | None
    ) -> Estimate:
        value, std_error = self._value_and_error(moments)
        if self.interval == "bootstrap" and stats is not None and moments.n >= 2:
            generator = rng if rng is not None else np.random.default_rng(self.seed)
            low, high = _bootstrap_interval(
                stats, self._combine, alpha=self.alpha, n_resamples=self.n_bootstrap, rng=generator
            )
        else:
            z = NormalDist().inv_cdf(1.0 - self.alpha / 2.0)
            low, high = value - z * std_error, value + z * std_error
        estimate = Estimate(
            estimator=self.name,
            value=value,
            ci_low=low,
            ci_high=high,
            std_error=std_error,
            alpha=self.alpha,
            n=moments.n,
            interval_method=self.interval_method,
            diagnostics=moments.diagnostics(),
        )
        reward_range = moments.reward_range
        if not self.clip or reward_range is None:
            return estimate
        return clip_to_range(estimate, self._value_range(reward_range))


class Accumulator:
    """Sums and counts of one estimator over chunks: `add(chunk)`, `merge(other)`, `get()`.

    Merging accumulators built on disjoint chunks gives the same estimate and analytic interval
    as one pass over the whole log (up to floating-point rounding). Support checks are per row,
    so they merge too.
    """

    def __init__(self, estimator: Estimator) -> None:
        self.estimator = estimator
        self._moments: _Moments | None = None

    def add(self, chunk: LoggedBandit, *, predictions: FloatArray | None = None) -> None:
        moments = self.estimator._rounds(chunk, predictions).moments()
        self._moments = moments if self._moments is None else self._moments + moments

    def merge(self, other: Accumulator) -> None:
        """Fold another accumulator of the same estimator into this one."""
        if other.estimator != self.estimator:
            raise ValueError(f"estimator: cannot merge {other.estimator!r} into {self.estimator!r}")
        if other._moments is None:
            return
        self._moments = other._moments if self._moments is None else self._moments + other._moments

    @property
    def n(self) -> int:
        return 0 if self._moments is None else self._moments.n

    def get(self) -> Estimate:
        if self._moments is None:
            raise ValueError("accumulator: no rows added (empty log)")
        return self.estimator._finish(self._moments, None, None)


def _bootstrap_interval(
    stats: FloatArray,
    combine: Callable[[FloatArray], FloatArray],
    *,
    alpha: float,
    n_resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile interval: resample rounds with replacement, recombine the resampled means."""
    n = stats.shape[1]
    block = max(1, min(n_resamples, _BOOTSTRAP_CELLS // n))
    values = np.empty(n_resamples)
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        picks = rng.integers(0, n, size=(size, n))
        picks += (np.arange(size, dtype=np.int64) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            values[start : start + size] = combine((counts @ stats.T) / n)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _direct(data: LoggedBandit, predictions: FloatArray) -> FloatArray:
    """Model value of the target policy per row: sum over candidates of pi_t(k) q_hat(k)."""
    return row_dot(data.require_target(), predictions, data.offsets, data.uniform_size)


def _residual(data: LoggedBandit, predictions: FloatArray) -> FloatArray:
    residual: FloatArray = data.reward - predictions[data.chosen_flat_index]
    return residual


def _require(predictions: FloatArray | None) -> FloatArray:
    if predictions is None:
        raise ValueError("reward_predictions: this estimator needs reward-model predictions")
    return predictions


@dataclass(frozen=True, kw_only=True)
class IPS(Estimator):
    """Inverse propensity scoring: V = mean_i w_i r_i with w_i = pi_t(a_i|x_i) / pi_0(a_i|x_i).

    Unbiased when the logging probabilities are right and cover the target's support
    (Horvitz & Thompson 1952; for bandits e.g. Dudík, Langford & Li 2011, ICML).
    """

    name: ClassVar[str] = "IPS"

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        return (data.importance_weights * data.reward)[None, :]


@dataclass(frozen=True, kw_only=True)
class SNIPS(Estimator):
    """Self-normalised IPS: V = sum_i w_i r_i / sum_i w_i.

    Slightly biased, much lower variance, always inside the reward range (Swaminathan &
    Joachims 2015, "The Self-Normalized Estimator for Counterfactual Learning", NeurIPS). The
    analytic interval uses the ratio-estimator (delta-method) variance
    sum_i w_i² (r_i - V)² / (sum_i w_i)².
    """

    name: ClassVar[str] = "SNIPS"
    self_normalized: ClassVar[bool] = True

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        weights = data.importance_weights
        return np.stack([weights * data.reward, weights])

    def _combine(self, means: FloatArray) -> FloatArray:
        ratio: FloatArray = means[..., 0] / means[..., 1]
        return ratio

    def _gradient(self, means: FloatArray) -> FloatArray:
        numerator, denominator = means
        return np.array([1.0 / denominator, -numerator / denominator**2])


@dataclass(frozen=True, kw_only=True)
class DM(Estimator):
    """Direct method: V = mean_i sum_k pi_t(k|x_i) q_hat(x_i, k), from a reward model alone.

    Low variance, biased by whatever the reward model gets wrong (Beygelzimer & Langford 2009;
    Dudík, Langford & Li 2011). The interval reflects sampling noise only, not model error, so
    cross-fit the predictions and read it as optimistic.
    """

    name: ClassVar[str] = "DM"
    uses_model: ClassVar[bool] = True

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        return _direct(data, _require(predictions))[None, :]


@dataclass(frozen=True, kw_only=True)
class DR(Estimator):
    """Doubly robust: V = mean_i [ sum_k pi_t(k|x_i) q_hat(x_i,k) + w_i (r_i - q_hat(x_i,a_i)) ].

    Unbiased if either the propensities or the reward model are right (Dudík, Langford & Li
    2011, "Doubly Robust Policy Evaluation and Learning", ICML).
    """

    name: ClassVar[str] = "DR"
    uses_model: ClassVar[bool] = True

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        q_hat = _require(predictions)
        correction = data.importance_weights * _residual(data, q_hat)
        return (_direct(data, q_hat) + correction)[None, :]


@dataclass(frozen=True, kw_only=True)
class SNDR(Estimator):
    """Self-normalised DR: V = mean_i DM_i + sum_i w_i (r_i - q_hat_i) / sum_i w_i.

    The correction term is self-normalised like SNIPS, which bounds the damage of large weights
    (Kallus & Uehara 2019, "Intrinsically Efficient, Stable, and Bounded Off-Policy Evaluation
    for Reinforcement Learning", NeurIPS; the form used by Open Bandit Pipeline). The analytic
    interval is the delta-method variance of this three-statistic ratio.
    """

    name: ClassVar[str] = "SNDR"
    uses_model: ClassVar[bool] = True
    self_normalized: ClassVar[bool] = True

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        q_hat = _require(predictions)
        weights = data.importance_weights
        return np.stack([_direct(data, q_hat), weights * _residual(data, q_hat), weights])

    def _combine(self, means: FloatArray) -> FloatArray:
        combined: FloatArray = means[..., 0] + means[..., 1] / means[..., 2]
        return combined

    def _gradient(self, means: FloatArray) -> FloatArray:
        _, correction, weight = means
        return np.array([1.0, 1.0 / weight, -correction / weight**2])


@dataclass(frozen=True, kw_only=True)
class SwitchDR(Estimator):
    """Switch-DR: DR where the weight is at most `threshold`, the reward model alone above it.

    V = mean_i [ sum_k pi_t(k|x_i) q_hat(x_i,k) + 1{w_i <= tau} w_i (r_i - q_hat(x_i,a_i)) ]
    (Wang, Agarwal & Dudík 2017, "Optimal and Adaptive Off-policy Evaluation in Contextual
    Bandits", ICML). tau = inf is DR, tau = 0 is DM; rows above tau are counted in the
    diagnostics as `model_rows`.
    """

    threshold: float = 100.0

    name: ClassVar[str] = "Switch-DR"
    uses_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.threshold >= 0.0:
            raise ValueError(f"threshold: must be >= 0, got {self.threshold}")

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        q_hat = _require(predictions)
        weights = data.importance_weights
        kept = np.where(weights <= self.threshold, weights, 0.0)
        return (_direct(data, q_hat) + kept * _residual(data, q_hat))[None, :]

    def _model_rows(self, data: LoggedBandit) -> BoolArray | None:
        above: BoolArray = data.importance_weights > self.threshold
        return above


@dataclass(frozen=True, kw_only=True)
class VersusLogging(Estimator):
    """The difference between a target policy's value (by `base`) and the logging policy's.

    The logging policy's value is the plain mean reward (on-policy). Both come from the same
    rounds, so the interval of the difference is the paired one: statistics [S_base; r] and
    g = g_base - mean(r), with the delta method or the bootstrap as `base` says; alpha,
    interval, resamples and seed are taken from `base`.
    """

    base: Estimator = field(default_factory=lambda: SNIPS())

    name: ClassVar[str] = "difference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", self.base.alpha)
        object.__setattr__(self, "interval", self.base.interval)
        object.__setattr__(self, "n_bootstrap", self.base.n_bootstrap)
        object.__setattr__(self, "seed", self.base.seed)
        object.__setattr__(self, "clip", self.base.clip)
        super().__post_init__()

    @property
    def interval_method(self) -> str:
        if self.interval == "bootstrap":
            return f"bootstrap percentile ({self.n_bootstrap} resamples), paired"
        return "analytic: paired delta method"

    def _resolve_predictions(
        self, data: LoggedBandit, predictions: FloatArray | None
    ) -> FloatArray | None:
        return self.base._resolve_predictions(data, predictions)

    @property
    def label(self) -> str:
        return f"{self.base.name} - logging"

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        base = self.base._stats(data, predictions)
        return np.vstack([base, data.reward[None, :]])

    def _combine(self, means: FloatArray) -> FloatArray:
        difference: FloatArray = self.base._combine(means[..., :-1]) - means[..., -1]
        return difference

    def _gradient(self, means: FloatArray) -> FloatArray:
        return np.append(self.base._gradient(means[:-1]), -1.0)

    def _model_rows(self, data: LoggedBandit) -> BoolArray | None:
        return self.base._model_rows(data)

    def _value_range(self, reward_range: tuple[float, float]) -> tuple[float, float]:
        width = reward_range[1] - reward_range[0]
        return (-width, width)

    def estimate(
        self,
        data: LoggedBandit,
        *,
        predictions: FloatArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> Estimate:
        result = super().estimate(data, predictions=predictions, rng=rng)
        return _relabel(result, self.label)


@dataclass(frozen=True, kw_only=True)
class LoggedMean(Estimator):
    """The logging policy's own value: the mean logged reward (on-policy, all weights 1)."""

    name: ClassVar[str] = "logged mean"

    def _stats(self, data: LoggedBandit, predictions: FloatArray | None) -> FloatArray:
        return np.asarray(data.reward)[None, :]

    def _rounds(self, data: LoggedBandit, predictions: FloatArray | None) -> _Rounds:
        return _Rounds(
            stats=self._stats(data, None),
            weights=np.ones(data.n),
            zero_rows=None,
            unscored_rows=None,
            model_rows=None,
            rewards=data.reward,
            reward_range=data.reward_range,
        )


def _relabel(estimate: Estimate, name: str) -> Estimate:
    return replace(estimate, estimator=name)


def estimate_by_group(
    estimator: Estimator,
    data: LoggedBandit,
    *,
    codes: IntArray,
    n_groups: int,
    predictions: FloatArray | None = None,
    rng: np.random.Generator | None = None,
) -> list[Estimate]:
    """One estimate per group of rows (codes in [0, n_groups)), from a single pass over the log."""
    rounds = estimator._rounds(data, predictions)
    groups = rounds.grouped_moments(codes, n_groups)
    generator = rng if rng is not None else np.random.default_rng(estimator.seed)
    results: list[Estimate] = []
    for g, moments in enumerate(groups):
        stats = rounds.stats[:, codes == g] if estimator.interval == "bootstrap" else None
        result = estimator._finish(moments, stats, generator)
        if isinstance(estimator, VersusLogging):
            result = _relabel(result, estimator.label)
        results.append(result)
    return results


DEFAULT_ESTIMATORS: tuple[Estimator, ...] = (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR())
