"""Final rewards without decisions: what reward finalisation would hand the learner, made up."""

from __future__ import annotations

import numpy as np

from optimizer.core.catalog import CatalogSnapshot, action_signature, frame_actions
from optimizer.memory.learning import MemoryLearningStore
from optimizer.ports.learning import LearnableReward

POLICY = "churn_prevention"
GONE = "retired_frame"
"""A policy no active frame serves any more: the learner skips its rewards."""


class SyntheticRewards:
    """Adds final rewards of policy decisions of the snapshot's frames to a memory store: a
    few candidates each, one chosen uniformly, about a third converting."""

    def __init__(self, store: MemoryLearningStore, snapshot: CatalogSnapshot) -> None:
        self.store = store
        self.candidates = {
            frame.key: np.array(
                sorted(
                    snapshot.actions[action_signature(*combo)]
                    for combo in frame_actions(frame.spec, snapshot.texts.values())
                ),
                dtype=np.int32,
            )
            for frame in snapshot.frames
        }

    def add(self, n: int, *, seed: int = 0, policy: str = POLICY) -> list[LearnableReward]:
        rng = np.random.default_rng(seed)
        added = []
        for i in range(n):
            name = GONE if rng.random() < 0.1 else policy
            pool = self.candidates[policy]
            ids = rng.choice(pool, size=min(len(pool), int(rng.integers(2, 8))), replace=False)
            added.append(
                self.store.add_final_reward(
                    LearnableReward(
                        sequence=0,
                        policy_name=name,
                        context={
                            "health_class": "CD"[i % 2],
                            "language": "en",
                            "usage_index": float(rng.random()),
                            "trigger": "health_c_to_d",
                            "hour": int(rng.integers(24)),
                            "weekday": int(rng.integers(7)),
                        },
                        action_ids=ids.astype(np.int32),
                        chosen_action_id=int(ids[rng.integers(len(ids))]),
                        probability=1.0 / len(ids),
                        reward=10.0 if rng.random() < 0.35 else 0.0,
                    )
                )
            )
        return added
