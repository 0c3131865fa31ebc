"""The frame's offer-cost limit per decision, kept while serving. Pure numpy.

A frame promises that its decisions cost at most `guardrails.max_offer_cost_per_decision` on
average, counting every policy decision (a no-contact decision costs 0), the same way the
promotion gate estimates it offline. A policy that prefers expensive offers would break that
promise between two gates, so each decision's distribution is mixed with the cheapest candidates
(no contact, where the frame allows it) just enough that its expected cost stays within the
limit. The mixed distribution is the one sampled from and logged, so the logs stay evaluable.

Mixing with the cheapest candidates spends the mass it moves without regard to what they earn.
A policy whose model predicts every candidate's reward does better by pricing offer cost
(`price_within_cost`): the best distribution within the limit is a two-constraint LP, and its
Lagrangian subtracts a price per unit of cost from every candidate's predicted reward; at the
right price the exploring distribution spends exactly the limit, and it moves mass to the cheaper
candidates the model rates best. `cap_expected_cost` stays as the safety net behind it.
"""

from __future__ import annotations

from collections.abc import Callable
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


PRICE_STEPS = 16
"""Bisection steps on the price: the two sides are mixed to spend exactly the limit, so the
bracket need not be tight (1/65,536 of it)."""
MAX_PRICE = 1e9


def price_within_cost(
    distribution_at: Callable[[float], FloatArray], costs: FloatArray, limit: float
) -> FloatArray:
    """The distribution at the lowest price of offer cost that keeps it within `limit`.

    `distribution_at(price)` is the policy's distribution when every candidate's predicted
    reward is lowered by `price * cost`; its expected cost falls as the price rises, in steps
    where the preferred candidate changes. The price is bisected to such a step and the
    distributions on its two sides are mixed so that the expected cost equals the limit, as the
    LP's optimum mixes a dear and a cheap candidate. When no price brings the cost within the
    limit (the exploration floor alone costs more), the dearest-priced distribution comes back
    and the caller's `cap_expected_cost` does the rest.
    """
    if not limit >= 0.0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    ceiling = limit * (1.0 + _TOLERANCE)
    free = distribution_at(0.0)
    if expected_cost(free, costs) <= ceiling:
        return free
    low, high = 0.0, 1.0
    at_low, at_high = free, distribution_at(high)
    while expected_cost(at_high, costs) > ceiling:
        if high >= MAX_PRICE:
            return at_high
        low, at_low = high, at_high
        high *= 4.0
        at_high = distribution_at(high)
    for _ in range(PRICE_STEPS):
        middle = 0.5 * (low + high)
        at_middle = distribution_at(middle)
        if expected_cost(at_middle, costs) > ceiling:
            low, at_low = middle, at_middle
        else:
            high, at_high = middle, at_middle
    dear, cheap = expected_cost(at_low, costs), expected_cost(at_high, costs)
    share = (limit - cheap) / (dear - cheap)
    mixed: FloatArray = share * at_low + (1.0 - share) * at_high
    return mixed / float(mixed.sum())


def best_within_cost(rates: FloatArray, costs: FloatArray, limit: float) -> float:
    """The highest expected rate of any distribution over the candidates within the cost limit.

    The oracle a cost-limited policy can be held to. Maximising a linear rate under one linear
    cost constraint and the simplex is a two-constraint LP, so some optimum puts its mass on at
    most two candidates: one affordable candidate, or a cheap one mixed with a dear one so that
    the expected cost equals `limit`. When no candidate is affordable, the best of the cheapest
    candidates (where `cap_expected_cost` puts all the mass).
    """
    if rates.shape != costs.shape:
        raise ValueError(f"costs: expected shape {rates.shape}, got {costs.shape}")
    if len(rates) == 0:
        raise ValueError("rates: a decision needs at least one candidate")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError("costs: offer costs must be finite and non-negative")
    if not limit >= 0.0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    ceiling = limit * (1.0 + _TOLERANCE)
    best = int(np.argmax(rates))
    if costs[best] <= ceiling:
        return float(rates[best])
    affordable = costs <= ceiling
    if not affordable.any():
        return float(rates[costs <= costs.min()].max())
    # the frontier: by cost, each candidate that beats every cheaper one; only those can mix best
    order = np.argsort(costs, kind="stable")
    cost, rate = costs[order], rates[order]
    keep = np.empty(len(rate), dtype=bool)
    keep[0] = True
    np.greater(rate[1:], np.maximum.accumulate(rate)[:-1], out=keep[1:])
    cost, rate = cost[keep], rate[keep]
    split = int(np.searchsorted(cost, ceiling, side="right"))
    single = float(rate[split - 1])
    cheap = cost[:split] < limit
    if split == len(cost) or not cheap.any():
        return single
    cheap_cost, cheap_rate = cost[:split][cheap][:, None], rate[:split][cheap][:, None]
    # the share of the dear candidate that brings the pair's expected cost to the limit
    share = (limit - cheap_cost) / (cost[split:] - cheap_cost)
    mixed = cheap_rate + share * (rate[split:] - cheap_rate)
    return max(single, float(mixed.max()))
