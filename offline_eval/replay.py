"""Policy replay: a target policy's distribution over every logged candidate set.

A target policy here is any callable that takes the logged dataset and returns one probability
per logged candidate (aligned with `action_ids`). `replay` checks the result, so a policy that
forgets a candidate or does not sum to 1 fails with the same messages as the dataset. Built-in
policies are small frozen dataclasses; all are vectorised over the flat candidate arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offline_eval._arrays import FloatArray, IntArray, row_sums
from offline_eval.dataset import LoggedBandit

TargetPolicy = Callable[[LoggedBandit], npt.ArrayLike]


def replay(data: LoggedBandit, *, policy: TargetPolicy) -> FloatArray:
    """The policy's probabilities for every logged candidate, validated against the log."""
    return data.with_target(policy(data)).require_target()


@dataclass(frozen=True)
class Uniform:
    """Every candidate of a row equally likely."""

    def __call__(self, data: LoggedBandit) -> FloatArray:
        probs: FloatArray = np.repeat(1.0 / data.sizes, data.sizes)
        return probs


@dataclass(frozen=True)
class FixedRule:
    """A deterministic rule: `pick(data)` returns, per row, the index of the candidate to play."""

    pick: Callable[[LoggedBandit], npt.ArrayLike]

    def __call__(self, data: LoggedBandit) -> FloatArray:
        index = np.asarray(self.pick(data), dtype=np.int64)
        if index.shape != (data.n,):
            raise ValueError(f"pick: expected one index per row ({data.n}), got {index.shape}")
        outside = int(np.count_nonzero((index < 0) | (index >= data.sizes)))
        if outside:
            raise ValueError(f"pick: {outside} of {data.n} rows pick outside their candidates")
        probs = np.zeros(data.n_candidates)
        probs[data.offsets[:-1] + index] = 1.0
        return probs


@dataclass(frozen=True)
class EpsilonGreedy:
    """1 - epsilon on the best-scored candidate (ties share it), epsilon spread uniformly.

    `scores` is one score per candidate, or a function of the dataset returning them (for
    example a reward model's predictions).
    """

    scores: Callable[[LoggedBandit], npt.ArrayLike] | npt.ArrayLike
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon}")

    def __call__(self, data: LoggedBandit) -> FloatArray:
        raw = self.scores(data) if callable(self.scores) else self.scores
        scores = np.asarray(raw, dtype=np.float64)
        if scores.shape != (data.n_candidates,):
            raise ValueError(
                f"scores: expected one score per candidate ({data.n_candidates}), "
                f"got {scores.shape}"
            )
        bad = int(np.count_nonzero(np.isnan(scores)))
        if bad:
            raise ValueError(f"scores: {bad} candidates have no score (NaN)")
        return _greedy(data, scores, self.epsilon)


def _greedy(data: LoggedBandit, scores: FloatArray, epsilon: float) -> FloatArray:
    best = _row_max(data, scores)
    top = scores == np.repeat(best, data.sizes)
    ties = row_sums(top, data.offsets, data.uniform_size)
    greedy = top * np.repeat((1.0 - epsilon) / ties, data.sizes)
    probs: FloatArray = greedy + np.repeat(epsilon / data.sizes, data.sizes)
    return probs


def _row_max(data: LoggedBandit, values: FloatArray) -> FloatArray:
    size = data.uniform_size
    if size is not None:
        best: FloatArray = values.reshape(data.n, size).max(axis=1)
        return best
    reduced: FloatArray = np.maximum.reduceat(values, data.offsets[:-1])
    return reduced


@dataclass(frozen=True)
class BestFixedAction:
    """The "best fixed combination": in every row, play the candidate whose action id has the
    highest estimated value in `values`; rows with no valued candidate fall back to uniform.

    With values from `fixed_action_values`, this is the single best action wherever it is
    eligible, the next best where it is not, and so on. Ties go to the first candidate.
    """

    values: Mapping[int, float]

    def __call__(self, data: LoggedBandit) -> FloatArray:
        if not self.values:
            raise ValueError("values: no action has an estimated value")
        ids = np.fromiter(self.values.keys(), dtype=np.int64, count=len(self.values))
        vals = np.fromiter(self.values.values(), dtype=np.float64, count=len(self.values))
        order = np.argsort(ids)
        ids, vals = ids[order], vals[order]
        position = np.clip(np.searchsorted(ids, data.action_ids), 0, len(ids) - 1)
        known = ids[position] == data.action_ids
        candidate_value = np.where(known, vals[position], -np.inf)
        best = _row_max(data, candidate_value)
        valued = np.isfinite(best)
        is_best = known & (candidate_value == np.repeat(best, data.sizes))
        first = _first_in_row(data, is_best)
        probs = np.repeat(np.where(valued, 0.0, 1.0 / data.sizes), data.sizes)
        probs[first[valued]] = 1.0
        return probs


def _first_in_row(data: LoggedBandit, mask: npt.NDArray[np.bool_]) -> IntArray:
    """Flat index of the first flagged candidate of every row (rows without one: -1)."""
    flagged = np.flatnonzero(mask)
    owner = np.searchsorted(data.offsets, flagged, side="right") - 1
    first = np.full(data.n, -1, dtype=np.int64)
    keep = np.ones(len(owner), dtype=bool)
    keep[1:] = owner[1:] != owner[:-1]
    first[owner[keep]] = flagged[keep]
    return first


def fixed_action_values(data: LoggedBandit, *, min_count: int = 30) -> dict[int, float]:
    """Estimated value of "always play action a where it is a candidate", for every action id
    chosen at least `min_count` times.

    It is the self-normalised IPS value sum_{i: a_i = a} r_i / p_i / sum_{i: a_i = a} 1 / p_i over
    the rows where a was a candidate. Choosing the best action and evaluating it on the same
    log is optimistic: select on one period, evaluate on the next.
    """
    if min_count < 1:
        raise ValueError(f"min_count: must be at least 1, got {min_count}")
    chosen = data.chosen_action_ids
    distinct, inverse = np.unique(chosen, return_inverse=True)
    inverse_weight = 1.0 / data.logged_probability
    numerator = np.bincount(inverse, data.reward * inverse_weight, len(distinct))
    denominator = np.bincount(inverse, inverse_weight, len(distinct))
    counts = np.bincount(inverse, minlength=len(distinct))
    return {
        int(action): float(numerator[i] / denominator[i])
        for i, action in enumerate(distinct)
        if counts[i] >= min_count
    }


def logging_policy(data: LoggedBandit) -> FloatArray:
    """The logged distribution itself, as a target (its value is the mean reward)."""
    probs = data.logging_probabilities
    if probs is None or np.isnan(probs).any():
        raise ValueError(
            "logging_probabilities: the full logged distribution is needed to replay the "
            "logging policy"
        )
    return probs
