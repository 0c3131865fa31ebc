"""Drift: a two-sided CUSUM on the serving model's signed prediction error.

A calibrated regression model's residual (the reward it saw minus what it predicted just before
learning it) has mean zero whatever the reward rates are. When what customers do changes
abruptly, the model becomes biased on the decisions the policy takes: what worked converts less
(negative residuals), what did not converts more. So the test watches the signed residual. Its
square loss does not do: square loss falls when conversion rates fall, because a Bernoulli's
variance shrinks with its mean, which hides the very change that matters.

Page's CUSUM (Page, 1954), two-sided, on residuals standardised by their running deviation:
g+ = max(0, g+ + z - k), g- = max(0, g- - z - k), alarm when either passes h. For independent
standard normal z, the mean run length between false alarms is about exp(2kh) / (2k^2) per side
(Siegmund's approximation): with k = 0.15 and h = 45 that is about 16 million rewards per side.
Bernoulli residuals are skewed, so the standardised residual is clipped at 2 deviations and the
clipped values' long-run mean, which clipping moves off zero, is subtracted. On 1 million i.i.d.
Bernoulli residuals at each of p = 0.03, 0.1, 0.15, 0.25 and 0.4 the test raised no alarm;
without the centring it raised 5 at p = 0.1 (h = 40). A shift of m standard deviations is
found after about h / (m - k) rewards. A change in what customers answer is a small shift in
these units: on the simulator, the churn frame's residual moved by about -0.17 deviations when
every class began to answer offers as its mirror class, because Bernoulli noise is large
against differences in take-rates and no-contact decisions do not move at all; k = 0.25 never
found it. The test
watches the slowest-learning candidate (`TunedModel.watcher`): a fast one adapts within a few
dozen rewards and hides the change. The benchmark (`benchmarks/drift.py`) measures delay and
false alarms on the simulator, with real, skewed and autocorrelated residuals.

After an alarm the monitor is `drifting` until the model has caught up: at least
`recovery_rewards` rewards since the alarm and a decayed mean of the standardised residual
(half-life `recovery_rewards / 2`) within `k / 2` of zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

CLIP = 2.0
CENTRE_HALF_LIVES = 5
"""The clipped residuals' mean is followed with a half-life this many times `half_life`: slow
enough that a change is found long before it moves the centre."""
"""Standardised residuals are clipped to +-CLIP: a rare conversion (or a rare, priced
unsubscribe) is a jump of many deviations that would otherwise add up to false alarms."""


@dataclass(frozen=True)
class DriftSettings:
    slack: float = 0.15
    """k: shifts smaller than this many standard deviations are tolerated."""
    threshold: float = 45.0
    """h: the cumulative evidence, in standard deviations, that raises an alarm."""
    warm_up: int = 2_000
    """Rewards learned before the test starts: a young model's residuals are biased anyway."""
    recovery_rewards: int = 500
    """The fewest rewards between an alarm and its recovery; half of it is the half-life of the
    mean residual that says whether the model caught up."""
    half_life: int = 2_000
    """Of the running residual deviation the residuals are standardised by."""


@dataclass
class DriftMonitor:
    """The test's state; small, and serialised with the model it watches."""

    settings: DriftSettings = DriftSettings()
    seen: int = 0
    variance: float = 0.0
    up: float = 0.0
    down: float = 0.0
    drifting_since: int | None = None
    """`seen` when the current alarm was raised; None while the model is in step."""
    recent_mean: float = 0.0
    centre: float = 0.0
    """Decayed sum of the clipped residuals while in step: clipping skews a Bernoulli's mean
    (a rare conversion is cut to 2 deviations, the many misses are not), which the test
    subtracts; it stands still while drifting."""
    centred: int = 0
    alarms: int = 0

    def add(self, residual: float) -> str | None:
        """Take one residual; "alarm" when drift is found, "recovered" when the model caught
        up after one, else None."""
        if not math.isfinite(residual):
            raise ValueError(f"residual: must be finite, got {residual}")
        s = self.settings
        self.seen += 1
        decay = 0.5 ** (1.0 / s.half_life)
        self.variance = decay * self.variance + (1.0 - decay) * residual * residual
        if self.seen <= s.warm_up:
            return None
        sd = math.sqrt(self.variance / (1.0 - decay**self.seen))
        clipped = min(max(residual / sd, -CLIP), CLIP) if sd > 0 else 0.0
        slow = 0.5 ** (1.0 / (CENTRE_HALF_LIVES * s.half_life))
        if self.drifting_since is None:
            self.centre = slow * self.centre + (1.0 - slow) * clipped
            self.centred += 1
        z = clipped - self.centre / (1.0 - slow**self.centred)
        recent = 0.5 ** (2.0 / s.recovery_rewards)
        self.recent_mean = recent * self.recent_mean + (1.0 - recent) * z
        if self.drifting_since is not None:
            caught_up = self.seen - self.drifting_since >= s.recovery_rewards
            if caught_up and abs(self.recent_mean) <= s.slack / 2:
                self.drifting_since = None
                self.up = self.down = 0.0
                return "recovered"
            return None
        self.up = max(0.0, self.up + z - s.slack)
        self.down = max(0.0, self.down - z - s.slack)
        if max(self.up, self.down) > s.threshold:
            self.drifting_since = self.seen
            self.alarms += 1
            return "alarm"
        return None

    @property
    def drifting(self) -> bool:
        return self.drifting_since is not None

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["settings"] = asdict(self.settings)
        return state

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftMonitor:
        settings = DriftSettings(**data.get("settings", {}))
        return cls(settings=settings, **{k: v for k, v in data.items() if k != "settings"})
