"""A synthetic logged-bandit generator whose target value is known exactly.

The setting follows Open Bandit Pipeline's `SyntheticBanditDataset` with
`logistic_reward_function`, a softmax behaviour policy and an epsilon-greedy evaluation policy:

- contexts x ~ N(0, I_d) (d = 5 by default), actions described by one-hot vectors;
- binary reward with P(r = 1 | x, a) = sigmoid(c + theta·x + gamma_a + delta_a·x), where c is a sum
  of three U(-1, 1) draws, theta and gamma_a sums of two and delta_a one per dimension. This is
  the distribution of obp's degree-1 logit x~ᵀ M ã + θ_xᵀ x~ + θ_aᵀ ã with x~ = [1, x],
  ã = [1, one-hot(a)] and uniform(-1, 1) coefficients;
- logging policy softmax(beta · q(x, ·)) over the expected rewards (obp's default behaviour
  policy with its `beta`);
- target policy epsilon-greedy on the true q: 1 - epsilon + epsilon / K on the best action.

Contexts are drawn from a finite population of customers, so the target's value
V = mean over the population of sum_a pi_t(a|x) q(x, a) is exact, not a Monte-Carlo estimate;
every logged decision samples a customer uniformly, an action from the logging policy and a
Bernoulli reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline_eval._arrays import FloatArray, IntArray
from offline_eval.dataset import LoggedBandit
from offline_eval.reward_models import Features


@dataclass(frozen=True, kw_only=True)
class SyntheticSetting:
    n_actions: int = 10
    dim_context: int = 5
    beta: float = 5.0
    epsilon: float = 0.3
    population: int = 50_000

    def __post_init__(self) -> None:
        if self.n_actions < 2:
            raise ValueError(f"n_actions: need at least 2, got {self.n_actions}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon}")
        if self.population < 1 or self.dim_context < 1:
            raise ValueError("population and dim_context: must be positive")


@dataclass(frozen=True, eq=False)
class SyntheticSample:
    """A logged dataset (target attached), its model features and the exact truth."""

    data: LoggedBandit
    features: Features
    true_value: float
    expected_reward: FloatArray  # q(x_i, k) for every logged candidate


class SyntheticEnvironment:
    """One draw of coefficients and customers; sample as many logs from it as needed."""

    def __init__(self, setting: SyntheticSetting, rng: np.random.Generator) -> None:
        k, d = setting.n_actions, setting.dim_context
        self.setting = setting
        intercept = rng.uniform(-1, 1, size=3).sum()
        theta = rng.uniform(-1, 1, size=(2, d)).sum(axis=0)
        gamma = rng.uniform(-1, 1, size=(2, k)).sum(axis=0)
        delta = rng.uniform(-1, 1, size=(d, k))
        self.contexts: FloatArray = rng.standard_normal((setting.population, d))
        logits = intercept + (self.contexts @ theta)[:, None] + gamma[None, :]
        logits += self.contexts @ delta
        self.q: FloatArray = 1.0 / (1.0 + np.exp(-logits))
        self.logging: FloatArray = _softmax(setting.beta * self.q)
        target = np.full((setting.population, k), setting.epsilon / k)
        target[np.arange(setting.population), self.q.argmax(axis=1)] += 1.0 - setting.epsilon
        self.target: FloatArray = target
        self.true_value = float((self.target * self.q).sum(axis=1).mean())

    def sample(self, n: int, rng: np.random.Generator) -> SyntheticSample:
        k = self.setting.n_actions
        customers = rng.integers(0, self.setting.population, size=n)
        logging = self.logging[customers]
        cumulative = np.cumsum(logging, axis=1)
        draws = rng.random(n)[:, None] * cumulative[:, -1:]
        chosen: IntArray = np.minimum((cumulative < draws).sum(axis=1), k - 1)
        q = self.q[customers]
        rows = np.arange(n)
        reward = (rng.random(n) < q[rows, chosen]).astype(np.float64)
        data = LoggedBandit(
            offsets=np.arange(n + 1, dtype=np.int64) * k,
            action_ids=np.tile(np.arange(k, dtype=np.int32), n),
            chosen_index=chosen.astype(np.int32),
            logged_probability=logging[rows, chosen],
            reward=reward,
            logging_probabilities=logging.ravel(),
            target_probabilities=self.target[customers].ravel(),
            reward_range=(0.0, 1.0),
        )
        features = Features(
            context=self.contexts[customers],
            action_table=np.eye(k),
            candidate_action=np.tile(np.arange(k, dtype=np.int64), n),
        )
        return SyntheticSample(
            data=data,
            features=features,
            true_value=self.true_value,
            expected_reward=q.ravel(),
        )


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    normalised: FloatArray = shifted / shifted.sum(axis=1, keepdims=True)
    return normalised
