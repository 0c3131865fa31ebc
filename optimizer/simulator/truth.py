"""The simulator's ground truth: how likely a customer takes a combination, and what annoys them.

The take-rate is a logistic model with real interactions:

    logit = base[trigger] + offer[class, offer] + timing[channel, send time]
            + reach[class, channel] + tone[class, text tone] + customer noise

and a customer who is not contacted converts at `sigmoid(base[trigger] + organic[class])`.
Built in on purpose: a discount or a free month saves a class-D customer but is wasted on class
A; app push in the late afternoon beats the morning; SMS annoys healthy customers (A/B) into
unsubscribing (with `annoyance`, app push and e-mail do too, less so, and urgent copy more);
urgent copy works on customers about to churn and puts healthy ones off.
Conversions arrive with an exponential delay (mean 1.5 days), a few after the window closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimizer.core.catalog import CatalogSnapshot, split_signature

CLASSES = "ABCD"

BASE = {
    "health_b_to_c": -2.5,
    "health_c_to_d": -2.7,
    "cancellation_requested": -2.2,
    "payment_failed": -1.9,
    "inactive_14d": -2.9,
    "category_binge": -2.8,
}
ORGANIC = {"A": -0.4, "B": -0.7, "C": -1.0, "D": -1.2}
OFFER = {
    "A": {
        "upgrade_trial": 1.0,
        "family_plan": 0.6,
        "content_recommendation": 0.2,
        "usage_tip": 0.0,
        "no_incentive": 0.0,
        "discount_3m": -0.4,
        "free_month": -0.5,
    },
    "B": {
        "upgrade_trial": 0.3,
        "family_plan": 0.8,
        "content_recommendation": 0.5,
        "usage_tip": 0.2,
        "no_incentive": 0.0,
        "discount_3m": 0.1,
        "free_month": 0.0,
    },
    "C": {
        "upgrade_trial": -0.2,
        "family_plan": 0.0,
        "content_recommendation": 0.6,
        "usage_tip": 0.3,
        "no_incentive": 0.0,
        "discount_3m": 0.9,
        "free_month": 0.6,
    },
    "D": {
        "upgrade_trial": -0.5,
        "family_plan": -0.3,
        "content_recommendation": 0.1,
        "usage_tip": -0.1,
        "no_incentive": -0.2,
        "discount_3m": 1.0,
        "free_month": 1.4,
    },
}
TIMING = {
    "app_push": {
        "weekday_late_afternoon": 0.8,
        "evening": 0.5,
        "weekday_lunch": 0.1,
        "weekday_morning": -0.6,
        "weekend": 0.2,
        "immediate": 0.0,
        "christmas_week": 0.3,
    },
    "email": {
        "weekday_morning": 0.4,
        "weekday_lunch": 0.2,
        "weekday_late_afternoon": 0.0,
        "evening": -0.2,
        "weekend": -0.3,
        "immediate": 0.1,
        "christmas_week": 0.2,
    },
    "sms": {
        "weekday_lunch": 0.3,
        "weekday_late_afternoon": 0.2,
        "weekday_morning": -0.1,
        "evening": -0.3,
        "weekend": -0.4,
        "immediate": 0.0,
        "christmas_week": 0.0,
    },
    "letter": {},
    "app_inbox": {"immediate": 0.2},
    "web_portal": {"immediate": 0.2},
}
REACH = {
    "A": {
        "email": 0.1,
        "app_push": 0.3,
        "web_portal": 0.4,
        "app_inbox": 0.3,
        "sms": -0.6,
        "letter": -0.3,
    },
    "B": {
        "email": 0.2,
        "app_push": 0.3,
        "web_portal": 0.2,
        "app_inbox": 0.2,
        "sms": -0.3,
        "letter": -0.1,
    },
    "C": {
        "email": 0.3,
        "app_push": 0.2,
        "web_portal": 0.0,
        "app_inbox": 0.1,
        "sms": 0.1,
        "letter": 0.0,
    },
    "D": {
        "email": 0.2,
        "app_push": -0.1,
        "web_portal": -0.2,
        "app_inbox": -0.3,
        "sms": 0.4,
        "letter": 0.5,
    },
}
TONE = {
    "A": {"urgent": -0.3, "friendly": 0.1, "informative": 0.2},
    "B": {"urgent": -0.2, "friendly": 0.2, "informative": 0.1},
    "C": {"urgent": 0.0, "friendly": 0.2, "informative": 0.0},
    "D": {"urgent": 0.3, "friendly": 0.0, "informative": -0.1},
}
UNSUBSCRIBE = {"sms": {"A": 0.04, "B": 0.03, "C": 0.006, "D": 0.004}}
UNSUBSCRIBE_BASE = 0.002
# With `annoyance`: pushy channels put healthy customers off far more than those who need help;
# letters and pull channels hardly ever; urgent copy multiplies it for the healthy.
ANNOYED_UNSUBSCRIBE = {
    "sms": {"A": 0.04, "B": 0.03, "C": 0.012, "D": 0.008},
    "app_push": {"A": 0.02, "B": 0.015, "C": 0.006, "D": 0.004},
    "email": {"A": 0.006, "B": 0.005, "C": 0.004, "D": 0.003},
}
URGENT_PUTS_OFF = {"A": 2.0, "B": 1.5}
MEAN_DELAY_DAYS = 1.5
MIRRORED_CLASSES = {"A": "D", "B": "C", "C": "B", "D": "A"}


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


@dataclass
class GroundTruth:
    """Take-rates per action, precomputed for every interned action of a catalog snapshot."""

    snapshot: CatalogSnapshot
    no_contact_id: int
    customer_noise_sd: float = 0.3
    annoyance: bool = False
    """Unsubscribes by channel, class and tone (`ANNOYED_UNSUBSCRIBE`) instead of the flat
    default, which keeps the demo's figures comparable with earlier versions."""
    _effects: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    _channel_of: dict[int, str] = field(default_factory=dict)
    _tone_of: dict[int, str] = field(default_factory=dict)

    @classmethod
    def for_snapshot(
        cls,
        snapshot: CatalogSnapshot,
        *,
        annoyance: bool = False,
        offers_as: dict[str, str] | None = None,
    ) -> GroundTruth:
        """The truth for a catalog; `offers_as` makes a class answer offers as another does."""
        truth = cls(
            snapshot=snapshot, no_contact_id=snapshot.actions["no_contact"], annoyance=annoyance
        )
        offers_as = offers_as or {}
        size = max(snapshot.actions.values()) + 1
        for hc in CLASSES:
            effect = np.zeros(size)
            for signature, action_id in snapshot.actions.items():
                offer, text, channel, slot = split_signature(signature)
                if offer is None or text is None or channel is None or slot is None:
                    continue
                tone = snapshot.texts[text].tone if text in snapshot.texts else "neutral"
                effect[action_id] = (
                    OFFER[offers_as.get(hc, hc)].get(offer, 0.0)
                    + TIMING.get(channel, {}).get(slot, 0.0)
                    + REACH[hc].get(channel, 0.0)
                    + TONE[hc].get(tone, 0.0)
                )
                truth._channel_of[action_id] = channel
                truth._tone_of[action_id] = tone
            truth._effects[hc] = effect
        return truth

    def take_rates(
        self, *, health_class: str, trigger: str, action_ids: np.ndarray[Any, Any], noise: float
    ) -> np.ndarray[Any, Any]:
        """P(conversion within the window) for each candidate of one decision."""
        base = BASE.get(trigger, -2.8) + noise
        logits = base + self._effects[health_class][action_ids]
        organic = base + ORGANIC[health_class]
        logits = np.where(action_ids == self.no_contact_id, organic, logits)
        return np.asarray(_sigmoid(logits))

    def organic_rate(self, *, health_class: str, trigger: str, noise: float) -> float:
        return float(_sigmoid(np.asarray(BASE.get(trigger, -2.8) + noise + ORGANIC[health_class])))

    def unsubscribe_rate(self, *, health_class: str, action_id: int) -> float:
        channel = self._channel_of.get(action_id)
        if channel is None:
            return 0.0
        if not self.annoyance:
            return UNSUBSCRIBE.get(channel, {}).get(health_class, UNSUBSCRIBE_BASE)
        rate = ANNOYED_UNSUBSCRIBE.get(channel, {}).get(health_class, UNSUBSCRIBE_BASE)
        if self._tone_of.get(action_id) == "urgent":
            rate *= URGENT_PUTS_OFF.get(health_class, 1.0)
        return rate

    @staticmethod
    def delay_days(rng: np.random.Generator) -> float:
        return float(rng.exponential(MEAN_DELAY_DAYS))
