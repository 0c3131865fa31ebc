"""The logged-bandit dataset: n decisions with candidate sets of varying size, validated once.

Candidates are stored flat (CSR): `offsets[i]:offsets[i + 1]` are row i's candidates in every
per-candidate array. Validation happens at construction and raises `ValueError` naming the field
and how many rows are affected, so a bad log fails loudly before any estimate is computed.

A per-candidate logging probability of NaN means the logging policy never scored that candidate
(it was added to the set afterwards, or the log kept only part of the distribution); the chosen
candidate's probability must always be known.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from offline_eval._arrays import (
    BoolArray,
    FloatArray,
    Int32Array,
    IntArray,
    candidate_positions,
    count_rows,
    readonly,
    row_any,
    row_sums,
    uniform_size,
)

DEFAULT_TOLERANCE = 1e-6

# Cached properties that depend on the target policy; dropped when the target changes.
_TARGET_CACHES = ("importance_weights", "support_flags")


def _rows(count: int, total: int) -> str:
    return f"{count} of {total} rows"


@dataclass(frozen=True, eq=False, kw_only=True)
class LoggedBandit:
    """Logged decisions: candidates, the logged choice and its probability, the reward.

    Per-candidate arrays (length N = offsets[-1]): `action_ids`, `logging_probabilities` (the full
    logged distribution when known; NaN for candidates the logging policy never scored),
    `target_probabilities` (the policy under evaluation), `reward_predictions` (a reward model's
    prediction for every candidate, for DM and DR). Per-row arrays (length n): `chosen_index`
    (position within the row), `logged_probability`, `reward`, `timestamp` (UTC) and `context`
    (segment columns such as health_class, channel, trigger; may hold `decision_id`).
    """

    offsets: IntArray
    action_ids: Int32Array
    chosen_index: Int32Array
    logged_probability: FloatArray
    reward: FloatArray
    logging_probabilities: FloatArray | None = None
    target_probabilities: FloatArray | None = None
    reward_predictions: FloatArray | None = None
    timestamp: npt.NDArray[np.datetime64] | None = None
    context: pd.DataFrame | None = None
    reward_range: tuple[float, float] | None = None
    tolerance: float = field(default=DEFAULT_TOLERANCE)

    def __post_init__(self) -> None:
        self.__dict__.update(_normalised(self.__dict__))
        offsets, logged, probs = self.offsets, self.logged_probability, self.logging_probabilities
        _check_decisions(offsets, self.action_ids, self.chosen_index, logged, self.reward)
        _check_reward_range(self.reward, self.reward_range)
        if probs is not None:
            gaps = _check_logging_distribution(
                probs, offsets, self.uniform_size, logged, self.chosen_flat_index, self.tolerance
            )
            if gaps is not None:
                self.__dict__["_support_gaps"] = gaps
        _check_row_metadata(self.timestamp, self.context, self.n)
        if self.target_probabilities is not None:
            _check_target(self.target_probabilities, offsets, self.uniform_size, self.tolerance)
        self._validate_predictions(self.reward_predictions)

    # -- construction helpers -------------------------------------------------------------

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate_predictions(self, predictions: FloatArray | None) -> None:
        _check_predictions(predictions, self.offsets)

    # -- derived values ----------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return len(self.offsets) - 1

    @property
    def n_candidates(self) -> int:
        return len(self.action_ids)

    @cached_property
    def sizes(self) -> IntArray:
        sizes: IntArray = np.diff(self.offsets)
        return sizes

    @cached_property
    def uniform_size(self) -> int | None:
        """The candidate count when every row has the same one (enables fast reshapes)."""
        return uniform_size(self.offsets)

    @cached_property
    def chosen_flat_index(self) -> IntArray:
        """Position of each row's chosen candidate in the flat per-candidate arrays."""
        index: IntArray = self.offsets[:-1] + self.chosen_index
        return readonly(index)

    @cached_property
    def chosen_action_ids(self) -> Int32Array:
        chosen: Int32Array = self.action_ids[self.chosen_flat_index]
        return readonly(chosen)

    @cached_property
    def importance_weights(self) -> FloatArray:
        """Target probability of the chosen candidate over its logged probability."""
        target = self.require_target()
        weights: FloatArray = target[self.chosen_flat_index] / self.logged_probability
        return readonly(weights)

    @cached_property
    def _support_gaps(self) -> tuple[IntArray, IntArray] | None:
        """Flat positions of candidates logged with probability 0 and of candidates the logging
        policy never scored; usually few, so checking a target against them is cheap."""
        logging = self.logging_probabilities
        if logging is None:
            return None
        return np.flatnonzero(logging == 0.0), np.flatnonzero(np.isnan(logging))

    @cached_property
    def support_flags(self) -> tuple[BoolArray, BoolArray] | None:
        """Per row: target mass on a candidate the logging policy gave probability 0, and on a
        candidate it never scored (NaN). None when the logging distribution is not logged."""
        target = self.require_target()
        gaps = self._support_gaps
        if gaps is None:
            return None
        flags = []
        for positions in gaps:
            flagged = np.zeros(self.n, dtype=bool)
            hits = positions[target[positions] > 0.0]
            flagged[np.searchsorted(self.offsets, hits, side="right") - 1] = True
            flags.append(readonly(flagged))
        return flags[0], flags[1]

    def require_target(self) -> FloatArray:
        if self.target_probabilities is None:
            raise ValueError(
                "target_probabilities: the dataset has no target policy; use with_target()"
            )
        return self.target_probabilities

    def column(self, name: str) -> pd.Series[Any]:
        """One context column, e.g. a segment such as health_class or channel."""
        if self.context is None or name not in self.context.columns:
            known = [] if self.context is None else list(self.context.columns)
            raise ValueError(f"context: no column {name!r} (columns: {known})")
        return self.context[name]

    # -- derived datasets -----------------------------------------------------------------

    def with_target(self, target_probabilities: npt.ArrayLike) -> LoggedBandit:
        """The same log with another target policy; only the new target is validated."""
        target = readonly(_as_1d(target_probabilities, np.float64, "target_probabilities"))
        _check_target(target, self.offsets, self.uniform_size, self.tolerance)
        clone = self._clone()
        clone._set("target_probabilities", target)
        return clone

    def with_predictions(self, reward_predictions: npt.ArrayLike) -> LoggedBandit:
        """The same log with reward-model predictions for every candidate."""
        predictions = readonly(_as_1d(reward_predictions, np.float64, "reward_predictions"))
        self._validate_predictions(predictions)
        clone = self._clone()
        clone._set("reward_predictions", predictions)
        return clone

    def with_reward(
        self, reward: npt.ArrayLike, *, reward_range: tuple[float, float] | None = None
    ) -> LoggedBandit:
        """The same decisions with another outcome per row (a guardrail such as unsubscribes
        or offer cost), so any estimator can estimate it under a target policy."""
        values = _checked_outcome(reward, self.n)
        clone = self._clone()
        clone._set("reward", values)
        clone._set("reward_range", reward_range)
        clone._set("reward_predictions", None)
        return clone

    def take(self, rows: npt.ArrayLike) -> LoggedBandit:
        """A subset of rows (in the given order), e.g. one segment or one chunk of a stream."""
        index = np.asarray(rows)
        if index.dtype == np.bool_:
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False)
        if index.size == 0:
            raise ValueError("rows: the selection is empty (0 decisions)")
        if index.min() < 0 or index.max() >= self.n:
            raise ValueError(f"rows: indices must be in [0, {self.n})")
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(self.sizes[index], out=offsets[1:])
        flat, _ = candidate_positions(self.offsets, index)
        values: dict[str, Any] = {"offsets": offsets, "action_ids": self.action_ids[flat]}
        for name in ("logging_probabilities", "target_probabilities", "reward_predictions"):
            array = getattr(self, name)
            values[name] = None if array is None else array[flat]
        for name in ("chosen_index", "logged_probability", "reward", "timestamp"):
            array = getattr(self, name)
            values[name] = None if array is None else array[index]
        values["context"] = (
            None if self.context is None else self.context.iloc[index].reset_index(drop=True)
        )
        return LoggedBandit._trusted(
            reward_range=self.reward_range, tolerance=self.tolerance, **values
        )

    def _clone(self) -> LoggedBandit:
        clone = copy.copy(self)
        for name in _TARGET_CACHES:
            clone.__dict__.pop(name, None)
        return clone

    @classmethod
    def _trusted(cls, **values: Any) -> LoggedBandit:
        """Build from arrays derived from an already validated dataset, skipping re-validation."""
        instance = cls.__new__(cls)
        for item in fields(cls):
            value = values.get(item.name, item.default)
            if isinstance(value, np.ndarray):
                value = readonly(value)
            object.__setattr__(instance, item.name, value)
        return instance


def _normalised(values: dict[str, Any]) -> dict[str, Any]:
    """The fields with dtypes coerced once and arrays frozen (read-only views, no copies when
    possible), so every later check and estimate can trust them without converting again."""
    out = dict(values)
    out["offsets"] = readonly(_as_1d(values["offsets"], np.int64, "offsets"))
    for name in ("action_ids", "chosen_index"):
        out[name] = readonly(_as_int32(values[name], name))
    for name in ("logged_probability", "reward"):
        out[name] = readonly(_as_1d(values[name], np.float64, name))
    for name in ("logging_probabilities", "target_probabilities", "reward_predictions"):
        if values[name] is not None:
            out[name] = readonly(_as_1d(values[name], np.float64, name))
    if values["timestamp"] is not None:
        out["timestamp"] = _utc_timestamps(values["timestamp"])
    context = values["context"]
    if context is not None and not isinstance(context, pd.DataFrame):
        out["context"] = pd.DataFrame(context)
    tolerance = values["tolerance"]
    if not (0.0 < tolerance < 0.1):
        raise ValueError(f"tolerance: must be in (0, 0.1), got {tolerance}")
    return out


def _utc_timestamps(raw: npt.NDArray[np.datetime64]) -> npt.NDArray[np.datetime64]:
    """Naive UTC microseconds: timezone-aware input is converted, not silently truncated."""
    if isinstance(raw, (pd.Series, pd.Index)) and isinstance(raw.dtype, pd.DatetimeTZDtype):
        raw = (
            raw.tz_convert("UTC").tz_localize(None)
            if isinstance(raw, pd.Index)
            else (raw.dt.tz_convert("UTC").dt.tz_localize(None))
        )
    stamps = np.asarray(raw)
    if not np.issubdtype(stamps.dtype, np.datetime64):
        raise ValueError(f"timestamp: expected datetime64 values, got {stamps.dtype}")
    return readonly(stamps.astype("datetime64[us]", copy=False))


def _check_decisions(
    offsets: IntArray,
    action_ids: Int32Array,
    chosen_index: Int32Array,
    logged_probability: FloatArray,
    reward: FloatArray,
) -> None:
    """The CSR layout is sound and every row has a valid choice, a usable logged probability
    and a finite reward; everything else indexes through these, so they are checked first."""
    if len(offsets) < 2:
        raise ValueError("offsets: the log is empty (0 decisions)")
    n = len(offsets) - 1
    if offsets[0] != 0:
        raise ValueError(f"offsets: must start at 0, starts at {int(offsets[0])}")
    if int(offsets[-1]) != len(action_ids):
        raise ValueError(
            f"offsets: end at {int(offsets[-1])} but action_ids has {len(action_ids)} candidates"
        )
    sizes = np.diff(offsets)
    empty = int(np.count_nonzero(sizes <= 0))
    if empty:
        raise ValueError(f"offsets: {_rows(empty, n)} have no candidates")
    per_row: dict[str, npt.NDArray[Any]] = {
        "chosen_index": chosen_index,
        "logged_probability": logged_probability,
        "reward": reward,
    }
    for name, array in per_row.items():
        if len(array) != n:
            raise ValueError(f"{name}: has {len(array)} rows, expected {n}")
    outside = int(np.count_nonzero((chosen_index < 0) | (chosen_index >= sizes)))
    if outside:
        raise ValueError(f"chosen_index: {_rows(outside, n)} point outside their candidates")
    _check_probabilities(logged_probability, "logged_probability", n)
    missing = int(np.count_nonzero(np.isnan(reward)))
    if missing:
        raise ValueError(f"reward: {_rows(missing, n)} are missing (NaN)")
    infinite = int(np.count_nonzero(np.isinf(reward)))
    if infinite:
        raise ValueError(f"reward: {_rows(infinite, n)} are infinite")


def _check_reward_range(reward: FloatArray, reward_range: tuple[float, float] | None) -> None:
    """Bounded estimators rely on the declared range, so a reward outside it is an error."""
    if reward_range is None:
        return
    low, high = reward_range
    if not low <= high:
        raise ValueError(f"reward_range: low {low} is above high {high}")
    out = int(np.count_nonzero((reward < low) | (reward > high)))
    if out:
        raise ValueError(
            f"reward: {_rows(out, len(reward))} are outside reward_range [{low}, {high}]"
        )


def _check_logging_distribution(
    probs: FloatArray,
    offsets: IntArray,
    size: int | None,
    logged_probability: FloatArray,
    chosen_flat_index: IntArray,
    tol: float,
) -> tuple[IntArray, IntArray] | None:
    """The logged distribution is a distribution (NaN where never scored) that agrees with
    `logged_probability`. Returns the (empty) support gaps when the values already prove there
    are none, so the support check can skip its scan; None when they must be looked up."""
    n, total = len(offsets) - 1, int(offsets[-1])
    if len(probs) != total:
        raise ValueError(f"logging_probabilities: has {len(probs)} values, expected {total}")
    gaps: tuple[IntArray, IntArray] | None = None
    lowest, highest = _bounds(probs)
    if lowest >= 0.0 and highest <= 1.0:
        sums = row_sums(probs, offsets, size)
        off, over = int(np.count_nonzero(np.abs(sums - 1.0) > tol)), 0
        if lowest > 0.0:
            # No zero and no NaN anywhere: the support check has nothing to look at.
            empty = np.zeros(0, dtype=np.int64)
            gaps = (empty, empty)
    else:
        known = ~np.isnan(probs)
        bad = known & ((probs < 0.0) | (probs > 1.0))
        rows = count_rows(bad, offsets, size)
        if rows:
            raise ValueError(f"logging_probabilities: {_rows(rows, n)} have values outside [0, 1]")
        sums = row_sums(np.where(known, probs, 0.0), offsets, size)
        complete = ~row_any(~known, offsets, size)
        off = int(np.count_nonzero(complete & (np.abs(sums - 1.0) > tol)))
        over = int(np.count_nonzero(~complete & (sums > 1.0 + tol)))
    if off or over:
        raise ValueError(
            f"logging_probabilities: {_rows(off + over, n)} do not sum to 1 (tolerance {tol:g})"
        )
    at_chosen = probs[chosen_flat_index]
    disagree = int(np.count_nonzero(~(np.abs(at_chosen - logged_probability) <= tol)))
    if disagree:
        raise ValueError(
            f"logging_probabilities: {_rows(disagree, n)} disagree with logged_probability "
            "at the chosen candidate (or leave it unknown)"
        )
    return gaps


def _check_row_metadata(
    timestamp: npt.NDArray[np.datetime64] | None, context: pd.DataFrame | None, n: int
) -> None:
    """Timestamps and context are per row; a missing time would silently drop out of windows."""
    if timestamp is not None:
        if len(timestamp) != n:
            raise ValueError(f"timestamp: has {len(timestamp)} rows, expected {n}")
        missing = int(np.count_nonzero(np.isnat(timestamp)))
        if missing:
            raise ValueError(f"timestamp: {_rows(missing, n)} are missing (NaT)")
    if context is not None and len(context) != n:
        raise ValueError(f"context: has {len(context)} rows, expected {n}")


def _check_target(target: FloatArray, offsets: IntArray, size: int | None, tol: float) -> None:
    """The target policy must give a known probability to every logged candidate and sum to 1
    per row; checked on its own so `with_target` does not re-validate the log."""
    n, total = len(offsets) - 1, int(offsets[-1])
    if len(target) != total:
        raise ValueError(f"target_probabilities: has {len(target)} values, expected {total}")
    lowest, highest = _bounds(target)
    if not (lowest >= 0.0 and highest <= 1.0):
        missing = count_rows(np.isnan(target), offsets, size)
        if missing:
            raise ValueError(
                f"target_probabilities: {_rows(missing, n)} have no target probability for "
                "some logged candidates (NaN)"
            )
        bad = count_rows((target < 0.0) | (target > 1.0), offsets, size)
        raise ValueError(f"target_probabilities: {_rows(bad, n)} have values outside [0, 1]")
    sums = row_sums(target, offsets, size)
    off = int(np.count_nonzero(np.abs(sums - 1.0) > tol))
    if off:
        raise ValueError(
            f"target_probabilities: {_rows(off, n)} do not sum to 1 (tolerance {tol:g})"
        )


def _check_predictions(predictions: FloatArray | None, offsets: IntArray) -> None:
    """DM and DR use a prediction for every candidate, so each must be finite. The row layout
    is only needed to count offending rows, so the all-finite case never computes it."""
    if predictions is None:
        return
    total = int(offsets[-1])
    if len(predictions) != total:
        raise ValueError(f"reward_predictions: has {len(predictions)} values, expected {total}")
    if all(np.isfinite(_bounds(predictions))):
        return
    bad = count_rows(~np.isfinite(predictions), offsets, uniform_size(offsets))
    if bad:
        raise ValueError(
            f"reward_predictions: {_rows(bad, len(offsets) - 1)} have missing or infinite "
            "predictions"
        )


def _checked_outcome(reward: npt.ArrayLike, n: int) -> FloatArray:
    """A replacement outcome, frozen; it must be known and finite for every logged decision,
    since no estimator can skip a row."""
    values = readonly(_as_1d(reward, np.float64, "reward"))
    if len(values) != n:
        raise ValueError(f"reward: expected {n} values, got {len(values)}")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"reward: {_rows(bad, n)} are missing or infinite")
    return values


def _as_1d(values: npt.ArrayLike, dtype: type[np.generic], name: str) -> npt.NDArray[Any]:
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot be read as {np.dtype(dtype).name}: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array


def _as_int32(values: npt.ArrayLike, name: str) -> Int32Array:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if array.dtype == np.int32:
        return array
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, got {array.dtype}")
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{name}: values do not fit in int32")
    converted: Int32Array = array.astype(np.int32)
    return converted


def _bounds(values: FloatArray) -> tuple[float, float]:
    """Smallest and largest value; NaN if any value is NaN. Two passes, no temporaries, so the
    usual all-valid case costs little; detailed counting runs only when something is wrong."""
    if values.size == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def _check_probabilities(values: FloatArray, name: str, n: int) -> None:
    """A logged choice must have had a positive, known probability of at most 1."""
    missing = int(np.count_nonzero(np.isnan(values)))
    if missing:
        raise ValueError(f"{name}: {_rows(missing, n)} are missing (NaN)")
    zero = int(np.count_nonzero(values <= 0.0))
    if zero:
        raise ValueError(
            f"{name}: {_rows(zero, n)} are 0 or negative (a logged choice needs a positive "
            "probability)"
        )
    above = int(np.count_nonzero(values > 1.0))
    if above:
        raise ValueError(f"{name}: {_rows(above, n)} are above 1")
