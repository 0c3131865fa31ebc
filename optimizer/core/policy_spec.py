"""The policy spec: a frozen, validated description of a bandit policy that renders VW arguments.

The spec is separate from the stateful learner so it can be logged to MLflow as parameters,
compared against a frame's exploration bounds, and used to rebuild the same model from logs.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Algorithm = Literal["epsilon_greedy", "squarecb", "bagging", "cover"]
ALGORITHMS: tuple[Algorithm, ...] = ("epsilon_greedy", "squarecb", "bagging", "cover")


class ExplorationSpec(BaseModel):
    """Bounds a policy must stay within in this frame.

    Every candidate keeps at least `min_probability_share / K` of the probability mass (K
    candidates), so the logs stay evaluable; `max_epsilon` caps the exploration a policy spec may
    ask for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_probability_share: float = Field(default=0.05, ge=0.0, lt=1.0)
    max_epsilon: float = Field(default=0.3, ge=0.0, le=1.0)
    algorithms: list[Algorithm] = Field(default_factory=lambda: list(ALGORITHMS))


SHARED_NAMESPACES = {
    "c": "customer health class",
    "d": "customer details (language, usage, tenure, attributes)",
    "t": "trigger",
    "h": "time of the request",
}
ACTION_NAMESPACES = {"o": "offer", "x": "text", "n": "channel", "s": "send time"}
NAMESPACES = {**SHARED_NAMESPACES, **ACTION_NAMESPACES}


class Candidate(BaseModel):
    """One variation of a policy's regression model that the learner trains beside its own.

    Unset fields keep the policy's value; `add_interactions` extends its interactions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float | None = Field(default=None, gt=0.0, le=10.0)
    add_interactions: tuple[str, ...] = ()

    def label(self) -> str:
        parts = [] if self.learning_rate is None else [f"lr={self.learning_rate:g}"]
        parts += [f"+{term}" for term in self.add_interactions]
        return " ".join(parts) or "as the policy"


DEFAULT_CANDIDATES = (Candidate(learning_rate=0.1), Candidate(learning_rate=2.0))


class TuningSpec(BaseModel):
    """Self-tuning: regression models learned side by side; the best one with confidence serves.

    SquareCB's regret is bounded through its regression model's online square loss (Foster &
    Rakhlin, 2020), so the candidates race on exactly that: every candidate learns every final
    reward, and before it does, its prediction of the logged candidate's cost is scored
    (progressive validation, `optimizer.core.selection`). The serving candidate changes when
    another one's loss is lower by `z` standard errors of the paired difference, over at least
    `min_rewards` rewards; a reward counts half after `half_life` more.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    z: float = Field(default=2.0, ge=0.0, le=10.0)
    min_rewards: int = Field(default=200, ge=1)
    half_life: int | None = Field(default=20_000, ge=100)
    detect_drift: bool = True
    """Watch the leader's prediction error for drift (`optimizer.core.drift`) and start the
    race and exploration again when the world changes."""


class PolicySpec(BaseModel):
    """Features, interactions and exploration of one contextual-bandit policy.

    Interactions are pairs or triples of namespace letters: c health class, d customer details
    (language, usage, tenure, whitelisted attributes), t trigger, h request time (shared); o
    offer, x text, n channel, s send time (per candidate). The details enter only linearly
    unless a spec crosses them (`do`, `dn`, ...): a frame whose attributes should personalise
    its offers names those interactions. Crossed by default, they cost the simulator's demo 0.03
    to 0.05 of lift capture (replayed streams, seeds 7 and 3), noise the model has to average
    away.

    `min_probability_share` is the share of probability mass spread uniformly over the
    candidates, so every candidate keeps at least `min_probability_share / K`.

    Defaults: SquareCB with `gamma_scale` 400 and the interactions health class x offer, health
    class x channel, health class x text, channel x send time and trigger x offer. On the simulator
    (`benchmarks/learning_quality.py`) VW's default gamma_scale of 10 explored so much that the
    policy captured half as much lift after 40,000 decisions.

    Self-tuning (`tuning`, on by default for SquareCB) races the learning rates 0.7 (this spec's),
    0.1 and 2.0; see `TuningSpec` and `optimizer.tuning`. Until the race is confident (rarely
    within 5,000 rewards) the spec's own rate serves, and the data it gathers meanwhile shapes
    what every candidate learns, so the default matters: 0.5 suited the simulator's demo and
    lost to VW's defaults and LinUCB on the non-linear 50-action environments of
    `benchmarks.bandit_suite`; 1.0 won those and cost the demo 0.09 of lift capture; 0.7 wins
    them at a cost to the demo within its run-to-run spread.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    algorithm: Algorithm = "squarecb"
    epsilon: float = Field(default=0.05, ge=0.0, le=1.0)
    gamma_scale: float = Field(default=400.0, gt=0.0)
    bag_size: int = Field(default=5, ge=2, le=64)
    cover_size: int = Field(default=5, ge=1, le=64)
    interactions: tuple[str, ...] = ("co", "cn", "cx", "ns", "to")
    customer_attributes: tuple[str, ...] = ()
    learning_rate: float = Field(default=0.7, gt=0.0, le=10.0)
    bits: int = Field(default=18, ge=10, le=28)
    cb_type: Literal["mtr", "ips", "dr"] = "mtr"
    min_probability_share: float = Field(default=0.05, ge=0.0, lt=1.0)
    tuning: TuningSpec | None = TuningSpec()

    @model_validator(mode="before")
    @classmethod
    def _tuned_by_default_for_squarecb(cls, data: object) -> object:
        """Tuning is on by default where it applies: a spec for another algorithm that does
        not mention tuning gets none, rather than an error."""
        if (
            isinstance(data, dict)
            and "tuning" not in data
            and data.get("algorithm", "squarecb") != "squarecb"
        ):
            return {**data, "tuning": None}
        return data

    @field_validator("interactions")
    @classmethod
    def _known_namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for term in value:
            if not (2 <= len(term) <= 3) or any(ch not in NAMESPACES for ch in term):
                known = ", ".join(f"{k} ({v})" for k, v in NAMESPACES.items())
                raise ValueError(f"interaction {term!r}: use 2 or 3 namespace letters of {known}")
        return value

    @field_validator("customer_attributes")
    @classmethod
    def _attribute_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"customer attribute {name!r} is not a plain identifier")
        return value

    @model_validator(mode="after")
    def _epsilon_where_used(self) -> Self:
        if self.algorithm == "epsilon_greedy" and self.epsilon == 0.0:
            raise ValueError("epsilon_greedy needs epsilon > 0")
        return self

    @model_validator(mode="after")
    def _candidates_valid(self) -> Self:
        if self.tuning is not None and self.algorithm != "squarecb":
            raise ValueError(
                f"tuning races regression models under SquareCB; set tuning to null for "
                f"{self.algorithm}"
            )
        seen: dict[tuple[str, ...], int] = {}
        for index, spec in enumerate(self.candidate_specs()):
            args = tuple(spec.score_args())
            if args in seen:
                raise ValueError(
                    f"tuning candidate {index} trains the same model as "
                    + ("the policy itself" if seen[args] == 0 else f"candidate {seen[args]}")
                )
            seen[args] = index
        return self

    def candidate_specs(self) -> list[PolicySpec]:
        """The specs the learner trains side by side: this one first, then every candidate's
        variation of it (each untuned); just this one when tuning is off."""
        own = self.model_copy(update={"tuning": None})
        if self.tuning is None:
            return [own]
        specs = [own]
        base = own.model_dump()
        for candidate in self.tuning.candidates:
            fields = {**base}
            if candidate.learning_rate is not None:
                fields["learning_rate"] = candidate.learning_rate
            extra = tuple(t for t in candidate.add_interactions if t not in own.interactions)
            fields["interactions"] = own.interactions + extra
            specs.append(PolicySpec.model_validate(fields))
        return specs

    def exploration_rate(self) -> float:
        """The uniform exploration the algorithm adds on its own (0 for squarecb)."""
        return 0.0 if self.algorithm == "squarecb" else self.epsilon

    def vw_args(self) -> list[str]:
        args = [
            "--cb_explore_adf",
            "--quiet",
            "-b",
            str(self.bits),
            "-l",
            repr(self.learning_rate),
            "--cb_type",
            self.cb_type,
        ]
        match self.algorithm:
            case "epsilon_greedy":
                args += ["--epsilon", repr(self.epsilon)]
            case "squarecb":
                args += ["--squarecb", "--gamma_scale", repr(self.gamma_scale)]
            case "bagging":
                args += ["--bag", str(self.bag_size), "--epsilon", repr(self.epsilon)]
            case "cover":
                args += ["--cover", str(self.cover_size), "--epsilon", repr(self.epsilon)]
        for term in self.interactions:
            args += ["-q" if len(term) == 2 else "--cubic", term]
        return args

    def score_args(self) -> list[str]:
        """VW arguments of the cost regressor a tuned policy trains for this spec; SquareCB's
        exploration over its predictions is `optimizer.core.exploration`'s."""
        args = ["--cb_adf", "--quiet", "-b", str(self.bits), "-l", repr(self.learning_rate)]
        args += ["--cb_type", self.cb_type]
        for term in self.interactions:
            args += ["-q" if len(term) == 2 else "--cubic", term]
        return args

    def frame_violations(self, bounds: ExplorationSpec) -> list[str]:
        """Where this spec would leave a frame's exploration bounds (empty when inside)."""
        problems = []
        if self.algorithm not in bounds.algorithms:
            problems.append(f"algorithm {self.algorithm} is not allowed by the frame")
        if self.exploration_rate() > bounds.max_epsilon:
            problems.append(
                f"epsilon {self.epsilon:g} is above the frame's max_epsilon {bounds.max_epsilon:g}"
            )
        return problems

    def floor_share(self, bounds: ExplorationSpec) -> float:
        """The uniform share actually applied: the larger of the spec's and the frame's."""
        return max(self.min_probability_share, bounds.min_probability_share)
