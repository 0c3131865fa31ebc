"""Synthetic contextual-bandit environments for `benchmarks.bandit_suite` (pure numpy).

Every environment has d = 5 context features, x ~ N(0, I), and K actions, each with a fixed
feature vector z_a ~ N(0, I) in R^5 drawn per seed. A kind defines a raw score s(x, a):

- `linear`: bilinear x^T W z_a plus an action bias b_a;
- `kernel`: a weighted sum of RBF bumps over the joint point (x, z_a);
- `neighbour`: random prototypes in context space, each with a preferred point in action-feature
  space; the score falls off with the squared distance of z_a from the preferred point of the
  context's nearest prototype;
- `mlp`: a small random tanh network on [x, z_a, x * z_a].

The expected reward is mu(x, a) = sigmoid(SHARPNESS * (s - m) / sd), with m and sd the mean and
standard deviation of s over a calibration sample of contexts and all actions, so a uniform policy
earns about 0.5 whatever the kind. The observed reward is Bernoulli(mu): one uniform u_t is drawn
per round in advance and the reward of round t is 1 when u_t < mu(x_t, chosen), so every learner
faces the same luck. Contexts, uniforms, action features and parameters come from generators
seeded by the seed (and a stream number), never by the learner.

Variants: `delay` makes the reward of round t learnable only at round t + D; `drift` redraws the
score's parameters (and recalibrates) at the halfway round; `stationary` is neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

Kind = Literal["linear", "kernel", "neighbour", "mlp"]
Variant = Literal["stationary", "delay", "drift"]
KINDS: tuple[Kind, ...] = ("linear", "kernel", "neighbour", "mlp")
VARIANTS: tuple[Variant, ...] = ("stationary", "delay", "drift")

D = 5
SHARPNESS = 1.5
"""Slope of the sigmoid on the standardised score: sets how far the oracle is above uniform."""
CALIBRATION_CONTEXTS = 2_000
DEFAULT_DELAY = 500
KERNEL_BUMPS = 24
KERNEL_WIDTH = 1.5
PROTOTYPES = 8
MLP_HIDDEN = 16

_CONTEXTS, _DRAWS, _ACTIONS, _PARAMETERS, _CALIBRATION = range(5)


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class Scorer:
    """The raw score of one kind with one draw of its parameters."""

    kind: Kind
    params: dict[str, FloatArray]

    @classmethod
    def draw(cls, kind: Kind, rng: np.random.Generator) -> Scorer:
        match kind:
            case "linear":
                params = {"w": rng.normal(size=(D, D)) / D}
            case "kernel":
                params = {
                    "cx": rng.normal(size=(KERNEL_BUMPS, D)),
                    "cz": rng.normal(size=(KERNEL_BUMPS, D)),
                    "w": rng.normal(size=KERNEL_BUMPS),
                }
            case "neighbour":
                params = {
                    "p": rng.normal(size=(PROTOTYPES, D)),
                    "q": rng.normal(size=(PROTOTYPES, D)),
                }
            case "mlp":
                params = {
                    "a": rng.normal(size=(MLP_HIDDEN, D)) / np.sqrt(3 * D),
                    "b": rng.normal(size=(MLP_HIDDEN, D)) / np.sqrt(3 * D),
                    "c": rng.normal(size=(MLP_HIDDEN, D)) / np.sqrt(3 * D),
                    "bias": rng.normal(scale=0.5, size=MLP_HIDDEN),
                    "v": rng.normal(size=MLP_HIDDEN) / np.sqrt(MLP_HIDDEN),
                }
            case _:
                raise ValueError(f"kind: one of {', '.join(KINDS)}, not {kind!r}")
        return cls(kind=kind, params=params)

    def score(self, x: FloatArray, z: FloatArray, action_bias: FloatArray) -> FloatArray:
        """Raw scores, shape (len(x), len(z)); `action_bias` is the linear kind's b_a."""
        p = self.params
        match self.kind:
            case "linear":
                out: FloatArray = (x @ p["w"]) @ z.T + action_bias[None, :]
            case "kernel":
                width = 2.0 * KERNEL_WIDTH**2
                ex = np.exp(-_squared_distances(x, p["cx"]) / width)
                ez = np.exp(-_squared_distances(z, p["cz"]) / width)
                out = (ex * p["w"][None, :]) @ ez.T
            case "neighbour":
                nearest = np.argmin(_squared_distances(x, p["p"]), axis=1)
                out = -_squared_distances(p["q"], z)[nearest]
            case "mlp":
                out = np.zeros((len(x), len(z)))
                ax, bz = x @ p["a"].T, z @ p["b"].T
                for h in range(MLP_HIDDEN):
                    pre = ax[:, h, None] + bz[None, :, h] + (x * p["c"][h]) @ z.T + p["bias"][h]
                    out += p["v"][h] * np.tanh(pre)
        return out


def _squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    out: FloatArray = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return out


@dataclass(frozen=True)
class Phase:
    """A scorer and its calibration: mu = sigmoid(SHARPNESS * (s - mean) / std)."""

    scorer: Scorer
    mean: float
    std: float

    def mu(self, x: FloatArray, z: FloatArray, action_bias: FloatArray) -> FloatArray:
        s = self.scorer.score(x, z, action_bias)
        return sigmoid(SHARPNESS * (s - self.mean) / self.std)


def delivery_schedule(rounds: int, delay: int) -> list[list[int]]:
    """Slot r lists the rounds whose reward becomes learnable at round r (= t + delay).

    There are `rounds + delay` slots, so every round appears exactly once; a run of `rounds`
    rounds processes only the first `rounds` slots (later rewards mature after the horizon).
    """
    if delay < 0:
        raise ValueError(f"delay: must be >= 0, not {delay}")
    slots: list[list[int]] = [[] for _ in range(rounds + delay)]
    for t in range(rounds):
        slots[t + delay].append(t)
    return slots


@dataclass(frozen=True)
class Environment:
    """One synthetic environment over a fixed horizon of `rounds` rounds."""

    kind: Kind
    k: int
    seed: int
    rounds: int = 5_000
    variant: Variant = "stationary"
    delay: int = DEFAULT_DELAY

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: one of {', '.join(VARIANTS)}, not {self.variant!r}")
        if self.k < 2:
            raise ValueError(f"k: at least 2 actions, not {self.k}")
        if self.rounds < 1:
            raise ValueError(f"rounds: at least 1, not {self.rounds}")

    @property
    def name(self) -> str:
        suffix = "" if self.variant == "stationary" else f"-{self.variant}"
        return f"{self.kind}-K{self.k}{suffix}"

    def _rng(self, stream: int, *more: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, *more])

    @cached_property
    def contexts(self) -> FloatArray:
        """x_t for every round, shape (rounds, D)."""
        out: FloatArray = self._rng(_CONTEXTS).normal(size=(self.rounds, D))
        return out

    @cached_property
    def draws(self) -> FloatArray:
        """The pre-drawn uniform u_t of every round."""
        out: FloatArray = self._rng(_DRAWS).random(self.rounds)
        return out

    @cached_property
    def action_features(self) -> FloatArray:
        """z_a for every action, shape (k, D)."""
        out: FloatArray = self._rng(_ACTIONS, self.k).normal(size=(self.k, D))
        return out

    @cached_property
    def action_bias(self) -> FloatArray:
        out: FloatArray = self._rng(_ACTIONS, self.k, 1).normal(scale=0.5, size=self.k)
        return out

    @property
    def switch_round(self) -> int:
        """The first round of the redrawn reward function (`drift`), else the horizon."""
        return self.rounds // 2 if self.variant == "drift" else self.rounds

    def _bias(self, phase: int) -> FloatArray:
        """The action biases of a phase: the drifted phase permutes them among the actions."""
        if phase == 0:
            return self.action_bias
        out: FloatArray = self._rng(_ACTIONS, self.k, 2).permutation(self.action_bias)
        return out

    def _phase(self, phase: int) -> Phase:
        """The scorer of a phase (0, or 1 after the drift), calibrated on its own sample."""
        scorer = Scorer.draw(self.kind, self._rng(_PARAMETERS, KINDS.index(self.kind), phase))
        sample = self._rng(_CALIBRATION, phase).normal(size=(CALIBRATION_CONTEXTS, D))
        s = scorer.score(sample, self.action_features, self._bias(phase))
        return Phase(scorer=scorer, mean=float(s.mean()), std=float(s.std()))

    @cached_property
    def mu_table(self) -> FloatArray:
        """mu(x_t, a) for every round and action, shape (rounds, k)."""
        table = np.empty((self.rounds, self.k))
        spans = [(0, self.switch_round), (self.switch_round, self.rounds)]
        for phase, (start, stop) in enumerate(spans):
            if start == stop:
                continue
            calibrated, bias = self._phase(phase), self._bias(phase)
            for lo in range(start, stop, 1_000):
                hi = min(lo + 1_000, stop)
                table[lo:hi] = calibrated.mu(self.contexts[lo:hi], self.action_features, bias)
        return table

    def context(self, t: int) -> FloatArray:
        out: FloatArray = self.contexts[t]
        return out

    def mu(self, t: int) -> FloatArray:
        """mu(x_t, a) for every action a."""
        out: FloatArray = self.mu_table[t]
        return out

    def reward(self, t: int, action: int) -> float:
        """The observed reward of `action` at round t: 1 when u_t < mu(x_t, action)."""
        return 1.0 if self.draws[t] < self.mu_table[t, action] else 0.0

    def oracle_rewards(self) -> FloatArray:
        """The oracle's expected reward per round: max_a mu(x_t, a)."""
        out: FloatArray = self.mu_table.max(axis=1)
        return out

    def uniform_rewards(self) -> FloatArray:
        """The uniform policy's expected reward per round: mean_a mu(x_t, a)."""
        out: FloatArray = self.mu_table.mean(axis=1)
        return out

    def oracle_expected(self) -> float:
        return float(self.oracle_rewards().mean())

    def uniform_expected(self) -> float:
        return float(self.uniform_rewards().mean())

    @property
    def learning_delay(self) -> int:
        """Rounds until a reward is learnable: D for `delay`, else 0 (learn right after)."""
        return self.delay if self.variant == "delay" else 0

    def schedule(self) -> list[list[int]]:
        """`delivery_schedule` for this environment's horizon and learning delay."""
        return delivery_schedule(self.rounds, self.learning_delay)
