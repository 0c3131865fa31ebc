"""Figures of a simulation run: how much of the oracle's lift the policy captured, and more.

All arms are scored on the same decisions by the ground truth's take-rates: the learning policy
(what it chose), uniform random over the candidates, the best fixed combination per frame (the
A/B-test winner, picked in hindsight over the whole run; where it is not available the customer
is not contacted; it ignores the frames' cost limits), the oracle within the frames' cost limits
(the best distribution over each decision's candidates whose expected offer cost stays within
the frame's limit, the most a served policy can reach) and the unconstrained oracle (the best
candidate of every decision).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from statistics import NormalDist
from typing import Any

import numpy as np

from optimizer.ports.decision_logs import LoggedContact
from optimizer.simulator.reactions import DecisionStats


@dataclass(frozen=True)
class ArmValues:
    policy: float
    uniform: float
    best_fixed: float
    oracle_within_limits: float
    oracle: float

    @property
    def lift_capture(self) -> float:
        """Against the oracle within the frames' cost limits: what the policy could reach."""
        return lift_capture(self.policy, self.uniform, self.oracle_within_limits)

    @property
    def lift_capture_unconstrained(self) -> float:
        """Against the best candidate of every decision, cost limits ignored."""
        return lift_capture(self.policy, self.uniform, self.oracle)


def lift_capture(value: float, uniform: float, oracle: float) -> float:
    """(V - V_uniform) / (V_oracle - V_uniform); NaN when the oracle does no better."""
    spread = oracle - uniform
    return (value - uniform) / spread if spread > 0 else float("nan")


def best_fixed_per_frame(stats: DecisionStats) -> dict[str, int]:
    """Per frame, the action whose fixed use would have earned most over the whole run."""
    winners: dict[str, int] = {}
    frames = np.asarray(stats.frame)
    for frame in sorted(set(stats.frame)):
        rows = np.flatnonzero(frames == frame)
        ids = np.concatenate([stats.candidates[r] for r in rows])
        gains = np.concatenate(
            [stats.rates[r] - np.float32(stats.organic[r]) for r in rows]
        ).astype(np.float64)
        total = np.bincount(ids, weights=gains)
        winners[frame] = int(np.argmax(total))
    return winners


def best_fixed_values(stats: DecisionStats, winners: dict[str, int]) -> np.ndarray[Any, Any]:
    values = np.empty(len(stats.policy))
    for r in range(len(stats.policy)):
        hit = np.flatnonzero(stats.candidates[r] == winners.get(stats.frame[r], -1))
        values[r] = stats.rates[r][hit[0]] if len(hit) else stats.organic[r]
    return values


def arm_values(stats: DecisionStats, *, rows: slice) -> ArmValues:
    best = best_fixed_values(stats, best_fixed_per_frame(stats))
    return ArmValues(
        policy=float(np.mean(stats.policy[rows])),
        uniform=float(np.mean(stats.uniform[rows])),
        best_fixed=float(np.mean(best[rows])),
        oracle_within_limits=float(np.mean(stats.oracle_within_limits[rows])),
        oracle=float(np.mean(stats.oracle[rows])),
    )


def tail(n: int, share: float = 0.2) -> slice:
    return slice(round(n * (1 - share)), n)


def uplift(
    treated: list[bool], control: list[bool], *, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Difference of conversion rates with a Wald interval (treated minus control)."""
    if not treated or not control:
        return (float("nan"), float("nan"), float("nan"))
    p1, n1 = float(np.mean(treated)), len(treated)
    p0, n0 = float(np.mean(control)), len(control)
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    diff = p1 - p0
    return (diff, diff - z * se, diff + z * se)


def rolling(values: list[float] | np.ndarray[Any, Any], window: int) -> np.ndarray[Any, Any]:
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < window:
        return arr.cumsum() / np.arange(1, len(arr) + 1)
    kernel = np.ones(window) / window
    return np.convolve(arr, kernel, mode="valid")


def count_cap_violations(contacts: Sequence[LoggedContact], policies: dict[str, Any]) -> int:
    """Contacts that broke their frame's contact policy, checked from scratch.

    A contact breaks its frame's policy when some rolling window that contains it, together with
    the contacts reserved before it, holds more than the frame allows: per channel, in total
    (fatigue), for the same campaign, or closer than the minimum gap. Failed and cancelled
    contacts do not count. `contacts` are (customer, frame, channel, send_at, reserved_at,
    status) rows, `policies` the frames' `ContactPolicySpec` by key.
    """
    by_customer: dict[str, list[tuple[Any, Any, str, str]]] = defaultdict(list)
    for customer, frame, channel, send_at, reserved_at, status in contacts:
        if status not in ("failed", "cancelled"):
            by_customer[customer].append((reserved_at, send_at, frame, channel))
    violations = 0
    for rows in by_customer.values():
        rows.sort(key=lambda r: r[0])
        for i, (_reserved, send_at, frame, channel) in enumerate(rows):
            policy = policies.get(frame)
            if policy is None:
                continue
            earlier = rows[:i]
            limit = policy.channel_limits.get(channel)
            same_channel = [r for r in earlier if r[3] == channel]
            same_frame = [r for r in earlier if r[2] == frame]
            gap = timedelta(hours=policy.min_gap_hours)
            broke = (
                (limit is not None and _busiest(send_at, limit.days, same_channel) > limit.max)
                or _busiest(send_at, policy.fatigue_cap.days, earlier) > policy.fatigue_cap.max
                or _busiest(send_at, policy.once_per_customer_days, same_frame) > 1
                or any(abs(r[1] - send_at) < gap for r in earlier)
            )
            violations += bool(broke)
    return violations


def _busiest(moment: Any, days: float, pool: list[tuple[Any, Any, str, str]]) -> int:
    """Most contacts (`moment` included) in any window of `days` that contains `moment`."""
    window = timedelta(days=days)
    times = sorted([r[1] for r in pool if abs(r[1] - moment) < window] + [moment])
    best = 0
    for start in times:
        if start <= moment < start + window:
            best = max(best, sum(1 for t in times if start <= t < start + window))
    return best


def over_cost_limit(
    winners: dict[str, int], *, costs: np.ndarray[Any, Any], limits: dict[str, float]
) -> list[str]:
    """The frames whose best fixed combination costs more than the frame's limit per decision.

    Serving every decision with such a combination would break the frame's promise, so the best
    fixed arm is not a reachable benchmark there."""
    return sorted(
        frame
        for frame, action_id in winners.items()
        if action_id < len(costs) and costs[action_id] > limits.get(frame, float("inf"))
    )
