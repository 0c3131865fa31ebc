"""Rewards become final only when their attribution window closes.

Until then a reward is pending and never learned from, not even as 0. At closing, the frame's
reward definition turns the attributed conversions into a value: `binary` gives 1 for any
conversion, `value_minus_cost` the conversion value minus the offer's cost; no conversion gives
0; the frame's harm costs (an unsubscribe or complaint within the window, the contact itself)
are subtracted from either. A direct reward set by a caller replaces all of that. A contact
that was never sent (or failed) is void: the customer never saw it, so it says nothing about
the combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from optimizer.core.catalog import HarmSpec
from optimizer.core.values import DecisionReason, RewardDefinition
from optimizer.ports.rewards import ClosedReward, DueReward, RewardStore

NO_HARM = HarmSpec()


@dataclass(frozen=True)
class FinalizeReport:
    final: int
    void: int
    converted: int

    @property
    def total(self) -> int:
        return self.final + self.void


def reward_value(
    reward: DueReward,
    *,
    definition: str,
    offer_cost: float,
    reward_range: tuple[float, float],
    harm: HarmSpec = NO_HARM,
) -> float:
    """The value of a closed window under the frame's reward definition, less the harm the
    contact did within it, clipped to its range."""
    if reward.direct_value is not None:
        return min(max(reward.direct_value, reward_range[0]), reward_range[1])
    if reward.conversions <= 0:
        value = 0.0
    elif definition == RewardDefinition.value_minus_cost:
        value = reward.conversion_value - offer_cost
    else:
        value = 1.0
    value -= harm.of(
        contacted=reward.reason == DecisionReason.policy,
        unsubscribed=reward.unsubscribed,
        complained=reward.complained,
    )
    low, high = reward_range
    return min(max(value, low), high)


def is_void(reward: DueReward) -> bool:
    return reward.reason == DecisionReason.policy and (reward.failed or not reward.sent)


def closing(reward: DueReward) -> ClosedReward:
    """A due reward closed: void, or final under its frame's terms (binary in [0, 1] when the
    frame version is unknown)."""
    if is_void(reward):
        return ClosedReward(decision_id=reward.decision_id, value=None)
    terms = reward.terms
    definition = terms.definition if terms is not None else RewardDefinition.binary
    bounds = terms.reward_range if terms is not None and terms.reward_range else (0.0, 1.0)
    value = reward_value(
        reward,
        definition=definition,
        offer_cost=reward.offer_cost,
        reward_range=(float(bounds[0]), float(bounds[1])),
        harm=terms.harm if terms is not None else NO_HARM,
    )
    return ClosedReward(decision_id=reward.decision_id, value=value)


def finalize_due(store: RewardStore, *, now: datetime, limit: int = 20_000) -> FinalizeReport:
    """Close every pending reward whose window has closed by `now` (oldest first)."""
    due = store.due_rewards(now=now, limit=limit)
    closed = [closing(reward) for reward in due]
    store.close_rewards(closed=closed, now=now)
    final = sum(c.value is not None for c in closed)
    converted = sum(
        c.value is not None and r.conversions > 0 for c, r in zip(closed, due, strict=True)
    )
    return FinalizeReport(final=final, void=len(closed) - final, converted=converted)
