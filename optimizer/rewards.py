"""Rewards become final only when their attribution window closes.

Until then a reward is pending and never learned from, not even as 0. At closing, the frame's
reward definition turns the attributed conversions into a value: `binary` gives 1 for any
conversion, `value_minus_cost` the conversion value minus the offer's cost; no conversion gives
0. A direct reward set by a caller replaces that. A contact that was never sent (or failed) is
void: the customer never saw it, so it says nothing about the combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.catalog import read_snapshot
from campaign_db.engine import session_scope
from campaign_db.queries import DueReward
from optimizer.core.catalog import split_signature
from optimizer.core.values import DecisionReason, RewardDefinition


@dataclass(frozen=True)
class FinalizeReport:
    final: int
    void: int
    converted: int

    @property
    def total(self) -> int:
        return self.final + self.void


def reward_value(
    reward: DueReward, *, definition: str, offer_cost: float, reward_range: tuple[float, float]
) -> float:
    """The value of a closed window under the frame's reward definition, clipped to its range."""
    if reward.direct_value is not None:
        value = reward.direct_value
    elif reward.conversions <= 0:
        value = 0.0
    elif definition == RewardDefinition.value_minus_cost:
        value = reward.conversion_value - offer_cost
    else:
        value = 1.0
    low, high = reward_range
    return min(max(value, low), high)


def is_void(reward: DueReward) -> bool:
    return reward.reason == DecisionReason.policy and (reward.failed or not reward.sent)


def finalize_due(engine: Engine, *, now: datetime, limit: int = 20_000) -> FinalizeReport:
    """Close every pending reward whose window has closed by `now` (oldest first)."""
    final = void = converted = 0
    with session_scope(engine, write=True) as session:
        due = queries.due_rewards(session, now=now, limit=limit)
        if not due:
            return FinalizeReport(0, 0, 0)
        snapshot = read_snapshot(session, statuses=())
        signatures = {action_id: sig for sig, action_id in snapshot.actions.items()}
        frames = queries.frame_versions(session, keys={r.frame_key for r in due if r.frame_key})
        sequence = queries.next_reward_sequence(session)
        closed = []
        for reward in due:
            if is_void(reward):
                closed.append(
                    {
                        "decision_id": reward.decision_id,
                        "status": "void",
                        "value": None,
                        "sequence": None,
                    }
                )
                void += 1
                continue
            frame = frames.get((reward.frame_key or "", reward.frame_version or 0))
            definition = frame.reward_definition if frame is not None else "binary"
            bounds = frame.reward_range if frame is not None and frame.reward_range else [0.0, 1.0]
            offer_cost = 0.0
            if reward.chosen_action_id is not None:
                offer, *_ = split_signature(signatures.get(reward.chosen_action_id, "no_contact"))
                if offer is not None and offer in snapshot.offers:
                    offer_cost = snapshot.offers[offer].cost
            value = reward_value(
                reward,
                definition=definition,
                offer_cost=offer_cost,
                reward_range=(float(bounds[0]), float(bounds[1])),
            )
            closed.append(
                {
                    "decision_id": reward.decision_id,
                    "status": "final",
                    "value": value,
                    "sequence": sequence,
                }
            )
            sequence += 1
            final += 1
            converted += reward.conversions > 0
        queries.close_rewards(session, closed=closed, now=now)
    return FinalizeReport(final=final, void=void, converted=converted)
