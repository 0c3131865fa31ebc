"""Rewards whose attribution window has closed, and closing them in the learner's order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from optimizer.core.catalog import HarmSpec


@dataclass(frozen=True)
class RewardTerms:
    """A frame version's reward definition and the range its rewards are clipped to."""

    definition: str
    reward_range: tuple[float, ...]
    harm: HarmSpec = field(default_factory=HarmSpec)


@dataclass(frozen=True)
class DueReward:
    """A pending reward whose window has closed, with what finalising it needs."""

    decision_id: uuid.UUID
    conversions: int
    conversion_value: float
    direct_value: float | None
    sent: bool
    failed: bool
    reason: str
    offer_cost: float
    """The cost of the chosen combination's offer; 0 when it has none."""
    terms: RewardTerms | None
    """None when the decision's frame version is unknown."""
    unsubscribed: bool = False
    complained: bool = False


@dataclass(frozen=True)
class ClosedReward:
    decision_id: uuid.UUID
    value: float | None
    """The final value; None closes the reward as void (never learned from)."""


class RewardStore(Protocol):
    def due_rewards(self, *, now: datetime, limit: int) -> list[DueReward]:
        """Pending rewards whose window closed by `now`, oldest window first."""
        ...

    def close_rewards(self, *, closed: Sequence[ClosedReward], now: datetime) -> None:
        """Close them in one transaction. Final rewards get the next sequence numbers in the
        given order (the online learner's cursor); a reward no longer pending stays as it is."""
        ...
