"""What the managers' cockpit reads beyond the guardrails: a frame's decisions day by day and
what happened after one decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol


@dataclass(frozen=True)
class DayCounts:
    """One UTC day of a frame's decisions: all of them, the contacts a policy made, and those
    contacts that converted (whether or not their window has closed)."""

    day: date
    decisions: int
    contacts: int
    conversions: int


@dataclass(frozen=True)
class DecisionEvent:
    """Something that happened to a decision after it was made: a delivery event, an attributed
    conversion, the reward's window closing."""

    at: datetime
    kind: str
    detail: str


class CockpitReader(Protocol):
    def daily_counts(self, *, frame_key: str, days: list[date]) -> list[DayCounts]:
        """One row per day asked (UTC days, oldest first), zeros where nothing happened."""
        ...

    def decision_events(self, decision_id: uuid.UUID) -> list[DecisionEvent]:
        """Delivery events, conversions and the reward of one decision, oldest first."""
        ...
