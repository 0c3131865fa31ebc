"""The frame's offer-cost limit per decision, kept while serving. Pure numpy.

A frame promises that its decisions cost at most `guardrails.max_offer_cost_per_decision` on
average, counting every policy decision (a no-contact decision costs 0), the same way the
promotion gate estimates it offline. A policy that prefers expensive offers would break that
promise between two gates, so each decision's distribution is mixed with the cheapest candidates
(no contact, where the frame allows it) just enough that its expected cost stays within the
limit. The mixed distribution is the one sampled from and logged, so the logs stay evaluable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

# Relative slack before a distribution counts as above the limit (floating-point noise).
_TOLERANCE = 1e-12


def expected_cost(pmf: FloatArray, costs: FloatArray) -> float:
    return float(np.dot(pmf, costs))


def cap_expected_cost(pmf: FloatArray, costs: FloatArray, limit: float) -> FloatArray:
    """(1 - m) * pmf + m * cheapest with the smallest m that brings the expected cost to `limit`.

    `cheapest` is uniform over the candidates of least cost. A distribution already within the
    limit comes back unchanged; when even the cheapest candidate costs more than the limit, the
    cheapest candidates get all the mass (the least cost there is).
    """
    if pmf.shape != costs.shape:
        raise ValueError(f"costs: expected shape {pmf.shape}, got {costs.shape}")
    if len(pmf) == 0:
        return pmf
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError("costs: offer costs must be finite and non-negative")
    if not limit >= 0.0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    current = expected_cost(pmf, costs)
    if current <= limit * (1.0 + _TOLERANCE):
        return pmf
    least = float(costs.min())
    cheapest = np.where(costs <= least, 1.0, 0.0)
    cheapest /= cheapest.sum()
    if least >= limit:
        return cheapest
    mix = (current - limit) / (current - least)
    capped: FloatArray = (1.0 - mix) * pmf + mix * cheapest
    return capped / float(capped.sum())
