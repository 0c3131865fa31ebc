"""A synthetic customer population whose usage drifts between health classes.

Each customer has a long-run usage level; today's usage index mean-reverts towards it with noise,
so customers drift between classes A to D and some worsen every day. Usage is reported in the
service's own terms (days since last use, sessions and minutes in 30 days) chosen so that the
service's usage index reproduces the simulated one. Everything is drawn from one seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from optimizer.health import UsageIndexConfig

CHANNEL_CONSENT = {
    "email": 0.9,
    "app_push": 0.7,
    "sms": 0.5,
    "letter": 0.95,
    "app_inbox": 0.85,
    "web_portal": 0.9,
}
TIME_ZONES = ("Europe/Berlin", "Europe/Vienna", "Europe/Zurich")


@dataclass
class Population:
    ids: list[str]
    language: np.ndarray[Any, Any]
    time_zone: np.ndarray[Any, Any]
    customer_since: list[date]
    long_run: np.ndarray[Any, Any]
    usage: np.ndarray[Any, Any]
    noise: np.ndarray[Any, Any]
    consents: dict[str, np.ndarray[Any, Any]]

    @classmethod
    def generate(cls, n: int, *, rng: np.random.Generator, start: date) -> Population:
        long_run = rng.beta(2.2, 2.0, size=n)
        usage = np.clip(long_run + rng.normal(0, 0.08, size=n), 0.01, 0.99)
        return cls(
            ids=[f"sim-{i:06d}" for i in range(n)],
            language=np.where(rng.random(n) < 0.7, "de", "en"),
            time_zone=rng.choice(np.array(TIME_ZONES), size=n, p=[0.85, 0.1, 0.05]),
            customer_since=[
                start - timedelta(days=int(d)) for d in rng.integers(30, 5 * 365, size=n)
            ],
            long_run=long_run,
            usage=usage,
            noise=rng.normal(0, 0.3, size=n),
            consents={ch: rng.random(n) < p for ch, p in CHANNEL_CONSENT.items()},
        )

    def __len__(self) -> int:
        return len(self.ids)

    def drift(self, rng: np.random.Generator) -> None:
        """One day: revert 5 % of the way to the long-run level, plus noise and rare drops."""
        shock = np.where(rng.random(len(self)) < 0.01, rng.normal(-0.25, 0.1, len(self)), 0.0)
        self.usage = np.clip(
            self.usage
            + 0.1 * (self.long_run - self.usage)
            + rng.normal(0, 0.05, len(self))
            + shock,
            0.01,
            0.99,
        )

    def classes(self, config: UsageIndexConfig) -> np.ndarray[Any, Any]:
        u = self.usage
        return np.select(
            [u >= config.threshold_a, u >= config.threshold_b, u >= config.threshold_c],
            ["A", "B", "C"],
            default="D",
        )

    @staticmethod
    def observation(index: float, config: UsageIndexConfig) -> tuple[float, float, float]:
        """(recency days, sessions, minutes) whose usage index under `config` is `index`."""
        index = min(max(index, 1e-6), 1.0)
        recency = -math.log(index) * config.recency_half_life_days / math.log(2)
        return (
            round(recency, 6),
            index * config.frequency_cap_sessions,
            index * config.intensity_cap_minutes,
        )
