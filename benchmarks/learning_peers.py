"""Learners for the side-by-side replay in `benchmarks.learning_quality`.

Every learner sees the same stream of policy decisions one simulated day at a time: it picks one
candidate for each decision of the day with the model it had at the start of the day (the real
service also publishes new weights once a day, after learning), and at the end of the day it
learns the rewards whose attribution window closed. Rewards come from the ground truth with one
pre-drawn uniform per decision, so every learner faces the same luck.

- `UniformLearner`: uniform random over the candidates.
- `VWLearner`: our `BanditPolicy` (one per frame, the frame's spec), featurised by
  `optimizer.features` exactly like serving and the online learner.
- `MabwiserLearner`: MABWiser's LinUCB or LinTS (one `MAB` per frame, arms = action ids), on a
  numeric context vector with the information of VW's shared namespaces; it scores every arm
  with `predict_expectations` and takes the best one among the decision's candidates.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from optimizer.core.catalog import CatalogSnapshot
from optimizer.features import ActionLines
from optimizer.policy import BanditPolicy

HEALTH_CLASSES = ("A", "B", "C", "D")
LANGUAGES = ("de", "en")
HOUR_BUCKETS = 6  # 4-hour buckets of the customer's local hour
WEEKDAYS = 7


@dataclass(frozen=True)
class StreamDecision:
    """One logged policy decision, with what every learner needs to replay it."""

    index: int
    decision_id: uuid.UUID
    day: int
    created_at: datetime
    frame: str
    trigger: str
    context: Mapping[str, Any]
    action_ids: np.ndarray[Any, Any]
    rates: np.ndarray[Any, Any]
    """The truth's take-rate of every candidate (the no_contact candidate: the organic rate)."""
    organic: float
    draw: float
    """The pre-drawn uniform: a candidate converts when `draw < its rate`."""
    matures_at: datetime
    """When the reward becomes learnable: created_at plus the frame's attribution window."""
    shared: str
    vector: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Outcome:
    """A learner's pick for one decision and the reward it will earn."""

    decision: StreamDecision
    position: int
    probability: float
    reward: float


class Learner(Protocol):
    name: str

    def choose(self, day: Sequence[StreamDecision]) -> list[tuple[int, float]]:
        """(candidate position, its probability) for every decision of one day."""
        ...

    def learn(self, matured: Sequence[Outcome]) -> None:
        """Learn the rewards that matured by the end of a day (in maturity order)."""
        ...


def context_features(triggers: Sequence[str]) -> list[str]:
    """Names of the numeric context vector's columns."""
    return (
        [f"hc_{c}" for c in HEALTH_CLASSES]
        + [f"lang_{lang}" for lang in LANGUAGES]
        + [f"trigger_{t}" for t in triggers]
        + [f"hour_{4 * b:02d}-{4 * b + 3:02d}" for b in range(HOUR_BUCKETS)]
        + [f"wd{d}" for d in range(WEEKDAYS)]
        + ["usage_index", "tenure_years"]
    )


def context_vector(context: Mapping[str, Any], triggers: Sequence[str]) -> np.ndarray[Any, Any]:
    """The shared namespaces' information as numbers: one-hot class, language, trigger, hour
    bucket and weekday, plus usage index and tenure (years), as `shared_line` has them."""
    x = np.zeros(len(context_features(triggers)))
    offset = 0

    def one_hot(values: Sequence[str], value: str) -> None:
        nonlocal offset
        if value in values:
            x[offset + values.index(value)] = 1.0
        offset += len(values)

    one_hot(HEALTH_CLASSES, str(context.get("health_class")))
    one_hot(LANGUAGES, str(context.get("language")))
    one_hot(list(triggers), str(context.get("trigger")))
    hour, weekday = int(context.get("hour", 0)), int(context.get("weekday", 0))
    x[offset + min(hour // 4, HOUR_BUCKETS - 1)] = 1.0
    offset += HOUR_BUCKETS
    x[offset + weekday % WEEKDAYS] = 1.0
    offset += WEEKDAYS
    x[offset] = float(context.get("usage_index") or 0.0)
    tenure = context.get("tenure_days")
    x[offset + 1] = 0.0 if tenure is None else float(tenure) / 365.0
    return x


class UniformLearner:
    name = "uniform random"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def choose(self, day: Sequence[StreamDecision]) -> list[tuple[int, float]]:
        return [(int(self.rng.integers(len(d.action_ids))), 1.0 / len(d.action_ids)) for d in day]

    def learn(self, matured: Sequence[Outcome]) -> None:
        return None


class VWLearner:
    """One `BanditPolicy` per frame with the frame's spec, as the service runs it."""

    name = "VW (BanditPolicy, ours)"

    def __init__(self, snapshot: CatalogSnapshot, lines: ActionLines) -> None:
        self.frames = {f.key: f for f in snapshot.frames}
        self.lines = lines
        self.policies = {
            key: BanditPolicy(frame.spec.policy_spec(), name=key)
            for key, frame in self.frames.items()
        }
        self.floor = {
            key: self.policies[key].spec.floor_share(frame.spec.exploration)
            for key, frame in self.frames.items()
        }

    def _lines(self, d: StreamDecision) -> list[str]:
        lines = self.lines
        return [lines[int(a)] for a in d.action_ids]

    def choose(self, day: Sequence[StreamDecision]) -> list[tuple[int, float]]:
        picks = []
        for d in day:
            choice = self.policies[d.frame].choose(
                d.shared, self._lines(d), decision_id=d.decision_id, floor_share=self.floor[d.frame]
            )
            picks.append((choice.index, choice.probability))
        return picks

    def learn(self, matured: Sequence[Outcome]) -> None:
        for o in matured:
            d = o.decision
            self.policies[d.frame].learn(
                d.shared,
                self._lines(d),
                chosen=o.position,
                reward=o.reward,
                probability=o.probability,
            )


class MabwiserLearner:
    """MABWiser LinUCB / LinTS: one MAB per frame, arms = every action id of the frame."""

    def __init__(
        self,
        kind: str,
        *,
        alpha: float,
        arms_by_frame: Mapping[str, Sequence[int]],
        seed: int,
        l2_lambda: float = 1.0,
    ) -> None:
        if kind not in ("LinUCB", "LinTS"):
            raise ValueError(f"kind: LinUCB or LinTS, not {kind!r}")
        self.kind = kind
        self.alpha = alpha
        self.name = f"MABWiser {kind} (alpha={alpha:g})"
        self.rng = np.random.default_rng(seed)
        policy = (
            LearningPolicy.LinUCB(alpha=alpha, l2_lambda=l2_lambda)
            if kind == "LinUCB"
            else LearningPolicy.LinTS(alpha=alpha, l2_lambda=l2_lambda)
        )
        self.mabs = {
            frame: MAB(arms=sorted(int(a) for a in arms), learning_policy=policy, seed=seed)
            for frame, arms in arms_by_frame.items()
        }
        self.known = {frame: {int(a) for a in arms} for frame, arms in arms_by_frame.items()}
        self.fitted = dict.fromkeys(arms_by_frame, False)

    def choose(self, day: Sequence[StreamDecision]) -> list[tuple[int, float]]:
        picks: list[tuple[int, float]] = [(0, 0.0)] * len(day)
        by_frame: dict[str, list[int]] = {}
        for i, d in enumerate(day):
            by_frame.setdefault(d.frame, []).append(i)
        for frame, rows in by_frame.items():
            mab = self.mabs[frame]
            if not self.fitted[frame]:  # nothing learned yet: MABWiser cannot predict
                for i in rows:
                    k = len(day[i].action_ids)
                    picks[i] = (int(self.rng.integers(k)), 1.0 / k)
                continue
            known = self.known[frame]
            for i in rows:  # an action the frame's arms did not list: add it as a cold arm
                for a in day[i].action_ids:
                    if int(a) not in known:
                        mab.add_arm(int(a))
                        known.add(int(a))
            contexts = np.vstack([day[i].vector for i in rows])
            expectations = mab.predict_expectations(contexts)
            if isinstance(expectations, dict):
                expectations = [expectations]
            for i, scores in zip(rows, expectations, strict=True):
                values = np.fromiter((scores[int(a)] for a in day[i].action_ids), dtype=float)
                picks[i] = (int(np.argmax(values)), 1.0)
        return picks

    def learn(self, matured: Sequence[Outcome]) -> None:
        by_frame: dict[str, list[Outcome]] = {}
        for o in matured:
            by_frame.setdefault(o.decision.frame, []).append(o)
        for frame, outcomes in by_frame.items():
            mab = self.mabs[frame]
            decisions = [int(o.decision.action_ids[o.position]) for o in outcomes]
            rewards = [o.reward for o in outcomes]
            contexts = np.vstack([o.decision.vector for o in outcomes])
            if self.fitted[frame]:
                mab.partial_fit(decisions, rewards, contexts)
            else:
                mab.fit(decisions, rewards, contexts)
                self.fitted[frame] = True
