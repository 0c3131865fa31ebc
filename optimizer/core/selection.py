"""Progressive validation: which of several candidate models would have earned the most.

Every candidate model learns every final reward (the logged candidate, with its logged
probability). Before it learns one, its distribution over that decision's candidates gives an
inverse-propensity estimate of what it would have earned there: `reward * pi(chosen) / p`. All
candidates are scored on the same rewards, so the estimates are paired: the difference between a
challenger and the serving leader has a much smaller variance than either estimate, and the
leader changes only when a challenger's lower confidence bound on that difference is above zero.
Older rewards fade with a half-life, so the choice can follow a world that changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class ProgressiveValidation:
    """Decayed sums of every candidate's per-reward estimate and of their pairwise products."""

    def __init__(self, size: int, *, half_life: float | None = None) -> None:
        if size < 1:
            raise ValueError("size: progressive validation needs at least one candidate")
        self.size = size
        self.half_life = half_life
        self.decay = 0.5 ** (1.0 / half_life) if half_life else 1.0
        self.weight = 0.0
        self.weight_squares = 0.0
        self.sums: FloatArray = np.zeros(size)
        self.products: FloatArray = np.zeros((size, size))
        self.count = 0

    def add(self, values: Sequence[float] | FloatArray) -> None:
        """One reward's estimate for every candidate: `reward * pi_c(chosen) / p`."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (self.size,):
            raise ValueError(f"values: expected {self.size} estimates, got {v.shape}")
        d = self.decay
        self.weight = d * self.weight + 1.0
        self.weight_squares = d * d * self.weight_squares + 1.0
        self.sums = d * self.sums + v
        self.products = d * self.products + np.outer(v, v)
        self.count += 1

    def effective_count(self) -> float:
        """Kish's effective sample size of the decayed weights."""
        return self.weight**2 / self.weight_squares if self.weight_squares else 0.0

    def estimates(self) -> FloatArray:
        """Every candidate's estimated reward per decision."""
        return self.sums / self.weight if self.weight else np.zeros(self.size)

    def difference(self, challenger: int, leader: int) -> tuple[float, float]:
        """Estimated reward of `challenger` minus `leader`, and its standard error."""
        if not self.weight:
            return 0.0, math.inf
        w = self.weight
        mean = float(self.sums[challenger] - self.sums[leader]) / w
        p = self.products
        second = (
            float(p[challenger, challenger] - 2 * p[challenger, leader] + p[leader, leader]) / w
        )
        variance = max(second - mean * mean, 0.0)
        n = self.effective_count()
        return mean, math.sqrt(variance / n) if n > 1 else math.inf

    def challenger(self, leader: int, *, z: float, min_rewards: int) -> int | None:
        """The candidate with the highest lower bound on its gain over `leader`, when that bound
        is above zero; None while no candidate is better with confidence."""
        if self.count < min_rewards:
            return None
        best, best_bound = None, 0.0
        for c in range(self.size):
            if c == leader:
                continue
            mean, error = self.difference(c, leader)
            bound = mean - z * error
            if bound > best_bound:
                best, best_bound = c, bound
        return best

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "half_life": self.half_life,
            "weight": self.weight,
            "weight_squares": self.weight_squares,
            "sums": self.sums.tolist(),
            "products": self.products.tolist(),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressiveValidation:
        pv = cls(int(data["size"]), half_life=data.get("half_life"))
        pv.weight = float(data["weight"])
        pv.weight_squares = float(data["weight_squares"])
        pv.sums = np.asarray(data["sums"], dtype=np.float64).reshape(pv.size)
        pv.products = np.asarray(data["products"], dtype=np.float64).reshape(pv.size, pv.size)
        pv.count = int(data["count"])
        return pv
