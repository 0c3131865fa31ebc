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
        self._normalise()
        self._validate_core()
        self._validate_target(self.target_probabilities)
        self._validate_predictions(self.reward_predictions)

    # -- construction helpers -------------------------------------------------------------

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _normalise(self) -> None:
        """Coerce dtypes once and freeze the arrays (read-only views, no copies when possible)."""
        self._set("offsets", readonly(_as_1d(self.offsets, np.int64, "offsets")))
        self._set("action_ids", readonly(_as_int32(self.action_ids, "action_ids")))
        self._set("chosen_index", readonly(_as_int32(self.chosen_index, "chosen_index")))
        for name in ("logged_probability", "reward"):
            self._set(name, readonly(_as_1d(getattr(self, name), np.float64, name)))
        for name in ("logging_probabilities", "target_probabilities", "reward_predictions"):
            value = getattr(self, name)
            if value is not None:
                self._set(name, readonly(_as_1d(value, np.float64, name)))
        if self.timestamp is not None:
            raw = self.timestamp
            if isinstance(raw, (pd.Series, pd.Index)) and isinstance(raw.dtype, pd.DatetimeTZDtype):
                raw = (
                    raw.tz_convert("UTC").tz_localize(None)
                    if isinstance(raw, pd.Index)
                    else (raw.dt.tz_convert("UTC").dt.tz_localize(None))
                )
            stamps = np.asarray(raw)
            if not np.issubdtype(stamps.dtype, np.datetime64):
                raise ValueError(f"timestamp: expected datetime64 values, got {stamps.dtype}")
            self._set("timestamp", readonly(stamps.astype("datetime64[us]", copy=False)))
        if self.context is not None and not isinstance(self.context, pd.DataFrame):
            self._set("context", pd.DataFrame(self.context))
        if not (0.0 < self.tolerance < 0.1):
            raise ValueError(f"tolerance: must be in (0, 0.1), got {self.tolerance}")

    def _validate_core(self) -> None:
        offsets = self.offsets
        if len(offsets) < 2:
            raise ValueError("offsets: the log is empty (0 decisions)")
        n = len(offsets) - 1
        if offsets[0] != 0:
            raise ValueError(f"offsets: must start at 0, starts at {int(offsets[0])}")
        if int(offsets[-1]) != len(self.action_ids):
            raise ValueError(
                f"offsets: end at {int(offsets[-1])} but action_ids has {len(self.action_ids)} "
                "candidates"
            )
        sizes = np.diff(offsets)
        empty = int(np.count_nonzero(sizes <= 0))
        if empty:
            raise ValueError(f"offsets: {_rows(empty, n)} have no candidates")
        for name in ("chosen_index", "logged_probability", "reward"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: has {len(getattr(self, name))} rows, expected {n}")
        outside = int(np.count_nonzero((self.chosen_index < 0) | (self.chosen_index >= sizes)))
        if outside:
            raise ValueError(f"chosen_index: {_rows(outside, n)} point outside their candidates")
        _check_probabilities(self.logged_probability, "logged_probability", n)
        missing = int(np.count_nonzero(np.isnan(self.reward)))
        if missing:
            raise ValueError(f"reward: {_rows(missing, n)} are missing (NaN)")
        infinite = int(np.count_nonzero(np.isinf(self.reward)))
        if infinite:
            raise ValueError(f"reward: {_rows(infinite, n)} are infinite")
        if self.reward_range is not None:
            low, high = self.reward_range
            if not low <= high:
                raise ValueError(f"reward_range: low {low} is above high {high}")
            out = int(np.count_nonzero((self.reward < low) | (self.reward > high)))
            if out:
                raise ValueError(
                    f"reward: {_rows(out, n)} are outside reward_range [{low}, {high}]"
                )
        if self.logging_probabilities is not None:
            self._validate_logging_distribution(self.logging_probabilities)
        if self.timestamp is not None:
            if len(self.timestamp) != n:
                raise ValueError(f"timestamp: has {len(self.timestamp)} rows, expected {n}")
            missing = int(np.count_nonzero(np.isnat(self.timestamp)))
            if missing:
                raise ValueError(f"timestamp: {_rows(missing, n)} are missing (NaT)")
        if self.context is not None and len(self.context) != n:
            raise ValueError(f"context: has {len(self.context)} rows, expected {n}")

    def _validate_logging_distribution(self, probs: FloatArray) -> None:
        n, total = self.n, len(self.action_ids)
        if len(probs) != total:
            raise ValueError(f"logging_probabilities: has {len(probs)} values, expected {total}")
        tol = self.tolerance
        lowest, highest = _bounds(probs)
        if lowest >= 0.0 and highest <= 1.0:
            sums = row_sums(probs, self.offsets, self.uniform_size)
            off, over = int(np.count_nonzero(np.abs(sums - 1.0) > tol)), 0
            if lowest > 0.0:
                # No zero and no NaN anywhere: the support check has nothing to look at.
                empty = np.zeros(0, dtype=np.int64)
                self.__dict__["_support_gaps"] = (empty, empty)
        else:
            known = ~np.isnan(probs)
            bad = known & ((probs < 0.0) | (probs > 1.0))
            rows = count_rows(bad, self.offsets, self.uniform_size)
            if rows:
                raise ValueError(
                    f"logging_probabilities: {_rows(rows, n)} have values outside [0, 1]"
                )
            sums = row_sums(np.where(known, probs, 0.0), self.offsets, self.uniform_size)
            complete = ~row_any(~known, self.offsets, self.uniform_size)
            off = int(np.count_nonzero(complete & (np.abs(sums - 1.0) > tol)))
            over = int(np.count_nonzero(~complete & (sums > 1.0 + tol)))
        if off or over:
            raise ValueError(
                f"logging_probabilities: {_rows(off + over, n)} do not sum to 1 (tolerance {tol:g})"
            )
        at_chosen = probs[self.chosen_flat_index]
        disagree = int(np.count_nonzero(~(np.abs(at_chosen - self.logged_probability) <= tol)))
        if disagree:
            raise ValueError(
                f"logging_probabilities: {_rows(disagree, n)} disagree with logged_probability "
                "at the chosen candidate (or leave it unknown)"
            )

    def _validate_target(self, target: FloatArray | None) -> None:
        if target is None:
            return
        n, total = self.n, len(self.action_ids)
        if len(target) != total:
            raise ValueError(f"target_probabilities: has {len(target)} values, expected {total}")
        lowest, highest = _bounds(target)
        if not (lowest >= 0.0 and highest <= 1.0):
            missing = count_rows(np.isnan(target), self.offsets, self.uniform_size)
            if missing:
                raise ValueError(
                    f"target_probabilities: {_rows(missing, n)} have no target probability for "
                    "some logged candidates (NaN)"
                )
            bad = count_rows((target < 0.0) | (target > 1.0), self.offsets, self.uniform_size)
            raise ValueError(f"target_probabilities: {_rows(bad, n)} have values outside [0, 1]")
        sums = row_sums(target, self.offsets, self.uniform_size)
        off = int(np.count_nonzero(np.abs(sums - 1.0) > self.tolerance))
        if off:
            raise ValueError(
                f"target_probabilities: {_rows(off, n)} do not sum to 1 "
                f"(tolerance {self.tolerance:g})"
            )

    def _validate_predictions(self, predictions: FloatArray | None) -> None:
        if predictions is None:
            return
        total = len(self.action_ids)
        if len(predictions) != total:
            raise ValueError(f"reward_predictions: has {len(predictions)} values, expected {total}")
        if all(np.isfinite(_bounds(predictions))):
            return
        bad = count_rows(~np.isfinite(predictions), self.offsets, self.uniform_size)
        if bad:
            raise ValueError(
                f"reward_predictions: {_rows(bad, self.n)} have missing or infinite predictions"
            )

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
        self._validate_target(target)
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
        values = readonly(_as_1d(reward, np.float64, "reward"))
        if len(values) != self.n:
            raise ValueError(f"reward: expected {self.n} values, got {len(values)}")
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(f"reward: {_rows(bad, self.n)} are missing or infinite")
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
