"""Off-policy estimates for rankings (slates): K slots per round, a reward per slot.

A ranking is logged slot by slot: slot k's pick with its probability given the picks before it
(`optimizer.ranking`). Two estimators read such logs; both reduce them to one contribution per
round, whose mean is the estimate and whose spread gives the normal interval (as `IPS`).

- `SlotIPS` weights slot k's reward by the product of the target's and the logger's conditional
  probabilities over slots 1..k. Unbiased whenever a slot's reward depends on the context and
  the slots up to it (a cascade), and the logger covers the target's choices.
- `SlatePseudoInverse` (Swaminathan et al. 2017, "Off-policy evaluation for slate
  recommendation", NeurIPS) assumes the slate's reward is a sum over (slot, action) pairs and
  weights the whole slate's reward by θᵀ1_s with θ = Γ⁺ q: q is the target's marginal
  probability of each (slot, action) pair, Γ the logger's second moments of those indicators.
  It needs only marginals of the target, so it evaluates targets that are not slot-by-slot
  policies, and its variance grows with K rather than with the product of K weights.

Forced slots (a mirrored offer, probability 1 under both policies) carry weight 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from offline_eval.estimators import Diagnostics, Estimate

FloatArray = npt.NDArray[np.float64]
Slate = tuple[int, ...]

ConditionalPolicy = Callable[[Slate], Mapping[int, float]]
"""Given the picks of the slots before, the probability of each action for the next slot."""


def _matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a (rounds, slots) matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: every value must be finite")
    return array


@dataclass(frozen=True)
class LoggedSlates:
    """n logged rankings of K slots each (pad shorter rankings with reward 0, probabilities 1).

    `logging_probability[i, k]`: the logger's probability of round i's pick for slot k given
    its picks before; `target_probability[i, k]`: the target's probability of the same pick
    given the same picks before; `reward[i, k]`: what slot k earned (a click, say).
    """

    reward: FloatArray
    logging_probability: FloatArray
    target_probability: FloatArray

    def __post_init__(self) -> None:
        reward = _matrix(self.reward, "reward")
        logging = _matrix(self.logging_probability, "logging_probability")
        target = _matrix(self.target_probability, "target_probability")
        for name, array in (("logging_probability", logging), ("target_probability", target)):
            if array.shape != reward.shape:
                raise ValueError(f"{name}: shape {array.shape}, reward has {reward.shape}")
        if ((logging <= 0) | (logging > 1)).any():
            raise ValueError("logging_probability: every value must lie in (0, 1]")
        if ((target < 0) | (target > 1)).any():
            raise ValueError("target_probability: every value must lie in [0, 1]")
        object.__setattr__(self, "reward", reward)
        object.__setattr__(self, "logging_probability", logging)
        object.__setattr__(self, "target_probability", target)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def prefix_weights(self) -> FloatArray:
        """w[i, k] = Π_{j≤k} target / logging: the weight of slot k's reward."""
        ratio: FloatArray = self.target_probability / self.logging_probability
        weights: FloatArray = np.cumprod(ratio, axis=1, dtype=np.float64)
        return weights


def _estimate(name: str, contributions: FloatArray, weights: FloatArray, alpha: float) -> Estimate:
    n = int(contributions.size)
    if n == 0:
        raise ValueError("rounds: at least one logged ranking is needed")
    if not 0 < alpha < 1:
        raise ValueError("alpha: must lie in (0, 1)")
    value = float(contributions.mean())
    std_error = float(contributions.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    sq = float(np.dot(weights, weights))
    ess = float(weights.sum() ** 2 / sq) if sq > 0 else 0.0
    warning = "fewer than 1% effective rounds" if ess < 0.01 * n else None
    return Estimate(
        estimator=name,
        value=value,
        ci_low=value - z * std_error,
        ci_high=value + z * std_error,
        std_error=std_error,
        alpha=alpha,
        n=n,
        interval_method="analytic",
        diagnostics=Diagnostics(
            effective_sample_size=ess,
            max_importance_weight=float(np.abs(weights).max()),
            zero_probability_rows=None,
            unscored_rows=None,
            model_rows=None,
            warning=warning,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class SlotIPS:
    """Per-slot IPS with prefix weights: V = mean_i Σ_k r_ik Π_{j≤k} π(a_ij|·)/μ(a_ij|·).

    The expected total reward per ranking (e.g. clicks per page view) under the target.
    """

    alpha: float = 0.05
    name: str = "SlotIPS"

    def contributions(self, data: LoggedSlates) -> FloatArray:
        per_round: FloatArray = (data.prefix_weights * data.reward).sum(axis=1)
        return per_round

    def estimate(self, data: LoggedSlates) -> Estimate:
        weights = data.prefix_weights[:, -1]
        return _estimate(self.name, self.contributions(data), weights, self.alpha)


@dataclass(frozen=True, kw_only=True)
class SlatePseudoInverse:
    """The pseudo-inverse estimator: V = mean_i θ(x_i)ᵀ1_{s_i} · Σ_k r_ik, θ = Γ⁺ q.

    `weights[i]` is θ(x_i)ᵀ1_{s_i} for round i's slate (`pseudo_inverse_weight`).
    """

    alpha: float = 0.05
    name: str = "SlatePI"

    def estimate(self, reward: npt.ArrayLike, weights: npt.ArrayLike) -> Estimate:
        slate_reward = np.asarray(reward, dtype=np.float64)
        if slate_reward.ndim == 2:
            slate_reward = slate_reward.sum(axis=1)
        w = np.asarray(weights, dtype=np.float64)
        if slate_reward.shape != w.shape or w.ndim != 1:
            raise ValueError(
                f"weights: shape {w.shape} does not match the rewards' rounds {slate_reward.shape}"
            )
        if not np.isfinite(w).all() or not np.isfinite(slate_reward).all():
            raise ValueError("weights: every value (and every reward) must be finite")
        return _estimate(self.name, w * slate_reward, w, self.alpha)


def slate_distribution(
    policy: ConditionalPolicy, slots: int, *, prefix: Slate = ()
) -> dict[Slate, float]:
    """Every slate a slot-by-slot policy can produce, with its probability (the product of its
    slots' conditional probabilities). Exponential in `slots`: for small action sets."""
    if len(prefix) == slots:
        return {prefix: 1.0}
    out: dict[Slate, float] = {}
    for action, p in policy(prefix).items():
        if p <= 0:
            continue
        for slate, q in slate_distribution(policy, slots, prefix=(*prefix, action)).items():
            out[slate] = out.get(slate, 0.0) + p * q
    return out


def marginals(distribution: Mapping[Slate, float]) -> dict[tuple[int, int], float]:
    """P(action a in slot k) per (k, a) under a distribution over slates."""
    out: dict[tuple[int, int], float] = {}
    for slate, p in distribution.items():
        for k, action in enumerate(slate):
            out[(k, action)] = out.get((k, action), 0.0) + p
    return out


@dataclass(frozen=True)
class PseudoInverse:
    """θ = Γ⁺ q for one context: the slate weight θᵀ1_s of any slate `s` the logger can log."""

    index: Mapping[tuple[int, int], int]
    theta: FloatArray

    @classmethod
    def of(
        cls,
        logging: Mapping[Slate, float],
        target_marginals: Mapping[tuple[int, int], float],
    ) -> PseudoInverse:
        pairs = sorted({(k, a) for slate in logging for k, a in enumerate(slate)})
        missing = [pair for pair, p in target_marginals.items() if p > 0 and pair not in pairs]
        if missing:
            raise ValueError(
                f"target_marginals: the logger never shows {missing[:3]} (slot, action)"
            )
        index = {pair: i for i, pair in enumerate(pairs)}
        gamma = np.zeros((len(pairs), len(pairs)))
        for slate, p in logging.items():
            ids = [index[(k, a)] for k, a in enumerate(slate)]
            gamma[np.ix_(ids, ids)] += p
        q = np.zeros(len(pairs))
        for pair, p in target_marginals.items():
            if pair in index:
                q[index[pair]] = p
        theta: FloatArray = np.linalg.pinv(gamma) @ q
        return cls(index=index, theta=theta)

    def weight(self, slate: Sequence[int]) -> float:
        return float(sum(self.theta[self.index[(k, a)]] for k, a in enumerate(slate)))


def exact_value(
    policy: ConditionalPolicy, slots: int, slot_reward: Callable[[int, int], float]
) -> float:
    """The exact expected total reward of a slot-by-slot policy when slot k showing action a
    earns `slot_reward(k, a)` in expectation: the truth a synthetic benchmark checks against."""
    return float(
        sum(
            p * sum(slot_reward(k, a) for k, a in enumerate(slate))
            for slate, p in slate_distribution(policy, slots).items()
        )
    )


def softmax_policy(scores: Sequence[float], *, temperature: float = 1.0) -> ConditionalPolicy:
    """A slot-by-slot softmax over the actions not yet shown (a synthetic logger or target)."""
    base = np.asarray(scores, dtype=np.float64) / temperature

    def policy(prefix: Slate) -> dict[int, float]:
        left = [a for a in range(len(base)) if a not in prefix]
        logits = base[left] - base[left].max()
        p = np.exp(logits)
        p /= p.sum()
        return {a: float(q) for a, q in zip(left, p, strict=True)}

    return policy


def sample_slate(
    policy: ConditionalPolicy, slots: int, rng: np.random.Generator
) -> tuple[Slate, tuple[float, ...]]:
    """One slate drawn slot by slot, with each slot's conditional probability."""
    slate: list[int] = []
    probabilities: list[float] = []
    for _ in range(slots):
        pmf = policy(tuple(slate))
        actions = list(pmf)
        p = np.fromiter(pmf.values(), np.float64, len(pmf))
        i = int(rng.choice(len(actions), p=p / p.sum()))
        slate.append(actions[i])
        probabilities.append(float(p[i]))
    return tuple(slate), tuple(probabilities)


def all_slates(actions: int, slots: int) -> list[Slate]:
    """Every ordered choice of `slots` distinct actions out of `actions`."""
    return list(itertools.permutations(range(actions), slots))


__all__ = [
    "LoggedSlates",
    "PseudoInverse",
    "SlatePseudoInverse",
    "SlotIPS",
    "all_slates",
    "exact_value",
    "marginals",
    "sample_slate",
    "slate_distribution",
    "softmax_policy",
]
