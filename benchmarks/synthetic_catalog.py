"""A catalog with an exact number of candidates per decision, for benchmarks.

K - 1 contact combinations (offers x texts x channels x all-day slots) plus `no_contact`, one
frame without quiet hours and with loose caps, so every fresh customer sees all K candidates.
"""

from __future__ import annotations

from typing import Any

SHAPES = {10: (3, 1, 1, 3), 100: (11, 3, 1, 3), 1000: (37, 3, 3, 3)}


def synthetic_catalog(candidates: int) -> dict[str, Any]:
    offers, texts, channels, slots = SHAPES[candidates]
    channel_keys = [f"channel_{i}" for i in range(channels)]
    return {
        "triggers": [{"key": "bench", "name": "Benchmark trigger"}],
        "channels": [
            {"key": key, "name": key, "kind": "push", "max_length": 500} for key in channel_keys
        ],
        "send_times": [
            {
                "key": f"slot_{i}",
                "name": f"slot {i}",
                "kind": "slot",
                "weekdays": list(range(7)),
                "start": "00:00",
                "end": "24:00",
            }
            for i in range(slots)
        ],
        "offers": [
            {"key": f"offer_{i}", "name": f"offer {i}", "kind": "incentive", "cost": 1.0 + i % 5}
            for i in range(offers)
        ],
        "texts": [
            {
                "key": f"text_{i}_{j}",
                "offer": f"offer_{i}",
                "language": "en",
                "channels": channel_keys,
                "tone": ["friendly", "urgent", "informative"][j % 3],
                "body": f"Offer {i}, variant {j}.",
            }
            for i in range(offers)
            for j in range(texts)
        ],
        "frames": [
            {
                "key": "bench",
                "name": "Benchmark frame",
                "triggers": ["bench"],
                "health_classes": ["A", "B", "C", "D"],
                "offers": [f"offer_{i}" for i in range(offers)],
                "channels": channel_keys,
                "send_times": [f"slot_{i}" for i in range(slots)],
                "max_offer_cost": 10,
                "valid_from": "2026-01-01",
                "holdout_share": 0.0,
                "contact_policy": {
                    "once_per_customer_days": 1,
                    "min_gap_hours": 0,
                    "quiet_hours": None,
                    "fatigue_cap": {"max": 1000, "days": 1},
                },
                "approval": {"approved_by": "benchmark", "approved_at": "2026-11-01T00:00:00Z"},
            }
        ],
    }
