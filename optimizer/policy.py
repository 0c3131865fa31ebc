"""The bandit policy: a distribution over candidates, a reproducible choice, and learning.

A policy always answers with the whole distribution and the chosen candidate's probability, so
every decision can be evaluated offline. Before it has learned anything it is uniform within the
frame; afterwards every candidate keeps at least `floor_share / K` of the mass.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.core.policy_spec import ExplorationSpec, PolicySpec
from optimizer.cost_limit import cap_expected_cost, price_within_cost
from optimizer.tuning import PolicyModel, TunedModel, build_model

UNTRAINED_VERSION = "0"

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def reward_to_cost(reward: float) -> float:
    """VW minimises cost: the one place where a reward becomes a cost."""
    return -float(reward)


def seed_from_id(decision_id: uuid.UUID) -> int:
    """A 63-bit sampling seed derived from the decision id, so the choice can be replayed."""
    digest = hashlib.blake2b(decision_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def mix_with_uniform(pmf: FloatArray, floor_share: float) -> FloatArray:
    """(1 - s) * pmf + s / K: every candidate keeps at least s / K, and the sum stays 1."""
    k = len(pmf)
    if k == 0:
        return pmf
    total = float(pmf.sum())
    base = pmf / total if total > 0 else np.full(k, 1.0 / k)
    mixed: FloatArray = (1.0 - floor_share) * base + floor_share / k
    return mixed / float(mixed.sum())


def sample_index(distribution: FloatArray, seed: int) -> int:
    """Inverse-CDF sampling with a generator seeded from the decision."""
    u = np.random.default_rng(seed).random()
    index = int(np.searchsorted(np.cumsum(distribution), u, side="right"))
    return min(index, len(distribution) - 1)


@dataclass(frozen=True)
class Choice:
    index: int
    probability: float
    distribution: FloatArray
    seed: int


@dataclass(frozen=True)
class StoredModel:
    """A model version as a registry hands it out."""

    name: str
    version: str
    spec: PolicySpec
    model_data: bytes
    examples_learned: int


class BanditPolicy:
    """A policy spec plus its VW model, under a name and version from the registry."""

    def __init__(
        self,
        spec: PolicySpec,
        *,
        name: str,
        version: str = UNTRAINED_VERSION,
        model_data: bytes | None = None,
        examples_learned: int = 0,
    ) -> None:
        self.spec = spec
        self.name = name
        self.version = version
        self.examples_learned = examples_learned
        self.model: PolicyModel = build_model(spec, model_data)

    @classmethod
    def from_stored(cls, stored: StoredModel, *, version: str | None = None) -> BanditPolicy:
        """The policy a stored model version describes (under `version` where the caller names
        the version it asked for)."""
        return cls(
            stored.spec,
            name=stored.name,
            version=stored.version if version is None else version,
            model_data=stored.model_data,
            examples_learned=stored.examples_learned,
        )

    @property
    def trained(self) -> bool:
        return self.examples_learned > 0

    def distribution(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        floor_share: float,
        costs: FloatArray | None = None,
        max_expected_cost: float | None = None,
        penalties: FloatArray | None = None,
    ) -> FloatArray:
        """The pmf over `actions`; with `costs` and `max_expected_cost`, kept so that its
        expected offer cost stays within the frame's limit (`optimizer.cost_limit`): a tuned
        model prices offer cost into its predictions, and every distribution is capped.

        `penalties` lower each candidate's predicted reward before exploring (the budgets'
        pacing prices, `optimizer.budgets`); a model that only returns its own distribution
        (VW's exploration) or an untrained one has no predictions to lower."""
        k = len(actions)
        if k == 0:
            raise ValueError("candidates: a distribution needs at least one candidate")
        if penalties is not None and penalties.shape != (k,):
            raise ValueError(f"penalties: expected shape ({k},), got {penalties.shape}")
        priced = penalties is not None and bool(penalties.any()) and self.prices_cost
        if not self.trained or k == 1:
            pmf = np.full(k, 1.0 / k)
        elif costs is not None and max_expected_cost is not None and self.prices_cost:
            pmf = self._priced(shared, actions, floor_share, costs, max_expected_cost, penalties)
        elif priced:
            pmf = self._priced(shared, actions, floor_share, None, None, penalties)
        else:
            pmf = mix_with_uniform(self.model.predict(shared, actions), floor_share)
        if costs is not None and max_expected_cost is not None:
            pmf = cap_expected_cost(pmf, costs, max_expected_cost)
        return pmf

    @property
    def prices_cost(self) -> bool:
        """Whether the model predicts rewards that a price of offer cost can shift: a tuned
        model does; VW's own exploration returns only its distribution."""
        return isinstance(self.model, TunedModel)

    def _priced(
        self,
        shared: str,
        actions: Sequence[str],
        floor_share: float,
        costs: FloatArray | None,
        limit: float | None,
        penalties: FloatArray | None = None,
    ) -> FloatArray:
        """The tuned model's distribution with `penalties` added to its predicted costs (VW's
        cost is the negative reward) and, with `costs` and `limit`, offer cost priced in just
        enough to keep it within `limit`, the exploration floor included."""
        model = self.model
        if not isinstance(model, TunedModel):
            raise TypeError("only a tuned model's predictions can be priced")
        predicted = model.predicted_costs(shared, actions)
        if penalties is not None:
            predicted = predicted + penalties
        if costs is None or limit is None:
            return mix_with_uniform(model.explore(predicted), floor_share)
        offer_costs = costs

        def at(price: float) -> FloatArray:
            return mix_with_uniform(model.explore(predicted + price * offer_costs), floor_share)

        return price_within_cost(at, costs, limit)

    def choose(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        decision_id: uuid.UUID,
        floor_share: float,
        costs: FloatArray | None = None,
        max_expected_cost: float | None = None,
        penalties: FloatArray | None = None,
    ) -> Choice:
        distribution = self.distribution(
            shared,
            actions,
            floor_share=floor_share,
            costs=costs,
            max_expected_cost=max_expected_cost,
            penalties=penalties,
        )
        seed = seed_from_id(decision_id)
        index = sample_index(distribution, seed)
        return Choice(
            index=index,
            probability=float(distribution[index]),
            distribution=distribution,
            seed=seed,
        )

    def learn(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        chosen: int,
        reward: float,
        probability: float,
    ) -> None:
        self.model.learn(
            shared, actions, chosen=chosen, cost=reward_to_cost(reward), probability=probability
        )
        self.examples_learned += 1

    def floor_share(self, bounds: ExplorationSpec) -> float:
        """The uniform share this policy serves with in a frame: the spec's (`floor_share`),
        raised to the most exploration the frame allows (`max_epsilon`) while its model has
        found drift and not caught up, so the changed world is explored where it matters."""
        share = self.spec.floor_share(bounds)
        return max(share, bounds.max_epsilon) if self.drifting else share

    @property
    def drifting(self) -> bool:
        """Whether the model found drift and has not caught up yet (`optimizer.core.drift`)."""
        return isinstance(self.model, TunedModel) and self.model.drift.drifting

    def tuning_report(self) -> dict[str, Any] | None:
        """The self-tuning race (every candidate's estimate and which one serves), if tuned."""
        return self.model.report() if isinstance(self.model, TunedModel) else None

    def serialize(self) -> bytes:
        return self.model.serialize()
