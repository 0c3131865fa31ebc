"""SquareCB exploration over a regression model's predicted costs, for the self-tuning policy.

SquareCB (Foster & Rakhlin, 2020, "Beyond UCB"): with K candidates, predicted costs y and the
lowest b, every other candidate a gets 1 / (K + gamma * (y_a - y_b)) and b the rest; gamma grows
as gamma_scale * sqrt(t) with the rewards learned, so exploration fades as the model improves.
VW's `--squarecb` does the same inside its reduction but returns only the distribution; the
self-tuning policy also needs each model's predicted costs, so it explores here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def squarecb(costs: FloatArray, *, gamma_scale: float, learned: int) -> FloatArray:
    """The SquareCB distribution over candidates with predicted `costs` (lower is better)."""
    k = len(costs)
    if k == 0:
        return costs
    best = int(np.argmin(costs))
    gamma = gamma_scale * math.sqrt(max(learned, 1))
    pmf: FloatArray = 1.0 / (k + gamma * (costs - costs[best]))
    pmf[best] = 0.0
    pmf[best] = max(1.0 - float(pmf.sum()), 0.0)
    return pmf / float(pmf.sum())
