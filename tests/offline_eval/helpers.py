"""Small random logs with ragged candidate sets, for properties that must hold on any log."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from offline_eval import LoggedBandit


def random_distributions(
    rng: np.random.Generator, sizes: np.ndarray, floor: float = 0.0
) -> np.ndarray:
    """One random distribution per row, flat; every entry at least `floor / size`."""
    raw = rng.gamma(0.7, size=int(sizes.sum())) + 1e-3
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    totals = np.add.reduceat(raw, offsets[:-1])
    probs = raw / np.repeat(totals, sizes)
    return (1 - floor) * probs + floor / np.repeat(sizes, sizes)


def random_log(
    rng: np.random.Generator,
    n: int,
    *,
    max_candidates: int = 6,
    target: bool = True,
    rewards: str = "binary",
    **extra: Any,
) -> LoggedBandit:
    """A valid log: ragged candidate sets, chosen actions sampled from the logged distribution."""
    sizes = rng.integers(1, max_candidates + 1, size=n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    logging = random_distributions(rng, sizes, floor=0.05)
    cumulative = np.cumsum(logging)
    row_start = np.concatenate([[0.0], cumulative[offsets[1:-1] - 1]])
    draws = row_start + rng.random(n) * (np.add.reduceat(logging, offsets[:-1]))
    flat = np.clip(np.searchsorted(cumulative, draws, side="right"), offsets[:-1], offsets[1:] - 1)
    chosen = flat - offsets[:-1]
    action_ids = np.concatenate([rng.permutation(20)[:k] for k in sizes]).astype(np.int32)
    if rewards == "binary":
        reward = (rng.random(n) < 0.3 + 0.02 * action_ids[flat]).astype(float)
    else:
        reward = rng.normal(1.0, 2.0, size=n)
    values: dict[str, Any] = {
        "offsets": offsets,
        "action_ids": action_ids,
        "chosen_index": chosen,
        "logged_probability": logging[flat],
        "reward": reward,
        "logging_probabilities": logging,
        "target_probabilities": random_distributions(rng, sizes) if target else None,
        "context": pd.DataFrame(
            {
                "decision_id": [f"dec-{i}" for i in range(n)],
                "health_class": rng.choice(list("ABCD"), size=n),
                "channel": rng.choice(["email", "sms"], size=n),
            }
        ),
    }
    values.update(extra)
    return LoggedBandit(**values)
