"""Closing due rewards in memory, over the feedback store's ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from optimizer.memory.feedback import MemoryFeedbackStore
from optimizer.ports.rewards import ClosedReward, DueReward


class MemoryRewardStore:
    def __init__(self, feedback: MemoryFeedbackStore) -> None:
        self.ledger = feedback.ledger

    def due_rewards(self, *, now: datetime, limit: int) -> list[DueReward]:
        with self.ledger.lock:
            due = sorted(
                (
                    (d.reward.window_closes_at, d.outcome.decision_id, d)
                    for d in self.ledger.decisions.values()
                    if d.reward is not None
                    and d.reward.status == "pending"
                    and d.reward.window_closes_at <= now
                ),
                key=lambda item: (item[0], item[1]),
            )[:limit]
            return [
                DueReward(
                    decision_id=decision_id,
                    conversions=d.reward.conversions,
                    conversion_value=d.reward.conversion_value,
                    direct_value=d.reward.direct_value,
                    sent=d.reward.sent,
                    failed=d.reward.failed,
                    reason=d.outcome.reason,
                    offer_cost=d.offer_cost,
                    unsubscribed=d.reward.unsubscribed,
                    complained=d.reward.complained,
                    terms=self.ledger.frames.get(
                        (d.outcome.frame_key or "", d.outcome.frame_version or 0)
                    ),
                )
                for _, decision_id, d in due
                if d.reward is not None
            ]

    def close_rewards(self, *, closed: Sequence[ClosedReward], now: datetime) -> None:
        with self.ledger.lock:
            rewards = [d.reward for d in self.ledger.decisions.values() if d.reward is not None]
            sequence = max((r.sequence or 0 for r in rewards), default=0) + 1
            for closing in closed:
                reward = self.ledger.decisions[closing.decision_id].reward
                if reward is None or reward.status != "pending":
                    continue
                reward.status = "void" if closing.value is None else "final"
                reward.value = closing.value
                reward.finalized_at = now
                if closing.value is not None:
                    reward.sequence = sequence
                    sequence += 1
