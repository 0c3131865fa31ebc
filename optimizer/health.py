"""Health classes from usage, and the triggers a worsening class emits.

The usage index combines three signals, each normalised to [0, 1]:

- recency: `exp(-ln 2 · days_since_last_use / half_life)` (1 today, 0.5 after one half-life),
- frequency: sessions in the last 30 days over a cap, clipped at 1,
- intensity: minutes watched in the last 30 days over a cap, clipped at 1,

weighted (default 0.4, 0.35, 0.25). Thresholds map the index to classes: A ≥ 0.65, B ≥ 0.40,
C ≥ 0.20, else D. Every change of class is kept; a worsening one emits the catalog's trigger for
that change (e.g. `health_c_to_d`), whose decision goes to the outbox for push channels.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.values import HealthClass, JsonFloat, Timestamp


class UsageIndexConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recency_weight: float = Field(default=0.40, ge=0)
    frequency_weight: float = Field(default=0.35, ge=0)
    intensity_weight: float = Field(default=0.25, ge=0)
    recency_half_life_days: float = Field(default=7.0, gt=0)
    frequency_cap_sessions: float = Field(default=30.0, gt=0)
    intensity_cap_minutes: float = Field(default=1800.0, gt=0)
    threshold_a: float = Field(default=0.65, ge=0, le=1)
    threshold_b: float = Field(default=0.40, ge=0, le=1)
    threshold_c: float = Field(default=0.20, ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = self.recency_weight + self.frequency_weight + self.intensity_weight
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"the three weights must sum to 1 (they sum to {total:g})")
        if not self.threshold_a > self.threshold_b > self.threshold_c:
            raise ValueError("thresholds must fall: threshold_a > threshold_b > threshold_c")
        return self


class UsageIn(BaseModel):
    """One usage observation of a customer."""

    model_config = ConfigDict(extra="forbid")

    recency_days: JsonFloat = Field(ge=0, le=3650, allow_inf_nan=False)
    sessions_30d: JsonFloat = Field(ge=0, le=10_000, allow_inf_nan=False)
    minutes_30d: JsonFloat = Field(ge=0, le=43_200, allow_inf_nan=False)
    observed_at: Timestamp | None = None


def usage_index(usage: UsageIn, config: UsageIndexConfig) -> float:
    recency = math.exp(-math.log(2) * usage.recency_days / config.recency_half_life_days)
    frequency = min(usage.sessions_30d / config.frequency_cap_sessions, 1.0)
    intensity = min(usage.minutes_30d / config.intensity_cap_minutes, 1.0)
    index = (
        config.recency_weight * recency
        + config.frequency_weight * frequency
        + config.intensity_weight * intensity
    )
    return round(min(max(index, 0.0), 1.0), 6)


def health_class(index: float, config: UsageIndexConfig) -> HealthClass:
    if index >= config.threshold_a:
        return HealthClass.A
    if index >= config.threshold_b:
        return HealthClass.B
    if index >= config.threshold_c:
        return HealthClass.C
    return HealthClass.D


def worsening_trigger(snapshot: CatalogSnapshot, previous: str, current: str) -> str | None:
    """The trigger for a class change: exact (from, to) first, else any trigger into `current`."""
    if HealthClass(current).rank <= HealthClass(previous).rank:
        return None
    exact = [
        t.key
        for t in snapshot.triggers.values()
        if t.health_from == previous and t.health_to == current
    ]
    if exact:
        return sorted(exact)[0]
    into = [t.key for t in snapshot.triggers.values() if t.health_to == current]
    return sorted(into)[0] if into else None


def observed_at(usage: UsageIn, now: datetime) -> datetime:
    return usage.observed_at or now
