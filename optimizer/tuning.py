"""A self-tuning model: regression models learned side by side; the best with confidence serves.

A fixed learning rate cannot suit every frame: what learns fastest on a small catalog learns
too slowly on a large one. So a policy with `tuning` trains one VW cost regressor (`--cb_adf`)
per candidate spec on every final reward and serves SquareCB over the leader's predictions
(`optimizer.core.exploration`). SquareCB's regret is bounded through its regression model's
online square loss, so the candidates race on that: before a candidate learns a reward, its
prediction of the logged candidate's cost is scored, paired across candidates
(`optimizer.core.selection`). VW's update returns the pre-update predictions, so the race costs
one VW pass per candidate.

The regressors learn unweighted, as SquareCB's analysis has it, except when the logged choice
was no contact: that one keeps its importance weight 1/p (the logged probability itself stays
as it was, for offline evaluation). No contact is mostly chosen by the floor and the frame's
cost cap rather than by the model, and its reward is the organic rate every contact is compared
with. Replaying the simulator's first 30,000 policy decisions, this took lift capture from 0.70
(all unweighted) to 0.765; weighting every choice, even capped at 10, did worse (0.74; 0.28
uncapped). VW 9.9's `--squarecb` learns the same way, by a different route: it drops the weight
of every candidate but the last, and no contact is the last of our candidate lists.

Comparing the candidates' distributions by inverse-propensity estimates was measured first: it
is unbiased, but with 5 % uniform exploration it never reached confidence within 4,000 rewards,
because candidates differ only where one explores.

The serialised form holds every candidate's VW bytes and the validation sums, so a checkpoint,
a publication and a promotion carry the whole race and restore it exactly.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from optimizer.core.drift import DriftMonitor
from optimizer.core.exploration import squarecb
from optimizer.core.policy_spec import PolicySpec
from optimizer.core.selection import ProgressiveValidation
from optimizer.features import NO_CONTACT_LINE
from optimizer.vw import CBModel, VWError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

MAGIC = b"campopt-tuned/1\n"


class PolicyModel(Protocol):
    """What a policy needs of its model: a distribution, an update, and bytes."""

    def predict(self, shared: str, actions: Sequence[str]) -> FloatArray: ...

    def learn(
        self, shared: str, actions: Sequence[str], *, chosen: int, cost: float, probability: float
    ) -> None: ...

    def serialize(self) -> bytes: ...


def build_model(spec: PolicySpec, model_data: bytes | None = None) -> PolicyModel:
    """A VW model for an untuned spec, a `TunedModel` for a tuned one."""
    if spec.tuning is None:
        if model_data is not None and model_data.startswith(MAGIC):
            raise VWError("the model holds tuned candidates but the spec has no tuning")
        return CBModel(spec.vw_args()) if model_data is None else CBModel(model_data=model_data)
    return TunedModel(spec, model_data=model_data)


class TunedModel:
    """One VW cost regressor per candidate spec, progressive validation, and the leader."""

    def __init__(self, spec: PolicySpec, *, model_data: bytes | None = None) -> None:
        if spec.tuning is None:
            raise ValueError("spec: a tuned model needs a spec with tuning")
        self.tuning = spec.tuning
        self.specs = spec.candidate_specs()
        self.leader = 0
        self.switches = 0
        self.learned = 0
        self.drift = DriftMonitor()
        if model_data is None:
            self.models = [CBModel(s.score_args()) for s in self.specs]
            self.validation = ProgressiveValidation(
                len(self.specs), half_life=self.tuning.half_life
            )
        else:
            self._restore(model_data)

    @property
    def leader_spec(self) -> PolicySpec:
        return self.specs[self.leader]

    def predict(self, shared: str, actions: Sequence[str]) -> FloatArray:
        """The leader's SquareCB distribution over `actions`."""
        return self.explore(self.predicted_costs(shared, actions))

    def predicted_costs(self, shared: str, actions: Sequence[str]) -> FloatArray:
        """The leader's predicted cost (negative reward) of every candidate."""
        return self.models[self.leader].predict(shared, actions)

    def explore(self, costs: FloatArray) -> FloatArray:
        """SquareCB over predicted costs, as far as the leader has learned."""
        return squarecb(costs, gamma_scale=self.leader_spec.gamma_scale, learned=self.learned)

    def learn(
        self, shared: str, actions: Sequence[str], *, chosen: int, cost: float, probability: float
    ) -> None:
        """Every candidate learns the reward, unweighted as SquareCB's regression oracle is,
        except a no-contact choice, which keeps its importance weight 1/p; its pre-update
        prediction of the logged candidate's cost scores it first."""
        weighted = probability if actions[chosen] == NO_CONTACT_LINE else 1.0
        losses = np.empty(len(self.models))
        residual = 0.0
        for i, model in enumerate(self.models):
            predicted = model.predict_then_learn(
                shared, actions, chosen=chosen, cost=cost, probability=weighted
            )
            losses[i] = (float(predicted[chosen]) - cost) ** 2
            if i == self.watcher:
                residual = float(predicted[chosen]) - cost
        self.learned += 1
        self.validation.add(-losses)
        if self.tuning.detect_drift:
            self._watch(residual)
        challenger = self.validation.challenger(
            self.leader, z=self.tuning.z, min_rewards=self.tuning.min_rewards
        )
        if challenger is not None:
            self.leader = challenger
            self.switches += 1

    @property
    def watcher(self) -> int:
        """The candidate whose residual the drift test watches: the slowest learner. A fast
        one adapts to a change within a few dozen rewards and hides it; the slowest stays
        wrong longest (on a flipped toy world, twice the CUSUM evidence of the 0.7 leader)."""
        rates = [s.learning_rate for s in self.specs]
        return rates.index(min(rates))

    def _watch(self, residual: float) -> None:
        """Feed the drift test the watcher's residual (reward minus prediction). On an alarm
        the race starts again on what happens from now on: the weakest candidate other than
        the leader and the watcher restarts from scratch, unburdened by the old world, and
        validation forgets the old scores. While the model is drifting the policy explores
        more (`BanditPolicy.floor_share`)."""
        if self.drift.add(residual) == "alarm":
            others = [i for i in range(len(self.models)) if i not in (self.leader, self.watcher)]
            if others:
                estimates = self.validation.estimates()
                weakest = min(others, key=lambda i: float(estimates[i]))
                self.models[weakest] = CBModel(self.specs[weakest].score_args())
            self.validation = ProgressiveValidation(
                len(self.specs), half_life=self.tuning.half_life
            )

    def report(self) -> dict[str, Any]:
        """The race as a reader wants it: every candidate's square loss and who serves."""
        estimates = self.validation.estimates()
        return {
            "leader": self.leader,
            "leader_label": self.label(self.leader),
            "switches": self.switches,
            "rewards": self.validation.count,
            "drift": {
                "drifting": self.drift.drifting,
                "since_reward": self.drift.drifting_since,
                "alarms": self.drift.alarms,
            },
            "candidates": [
                {"label": self.label(i), "square_loss": -float(estimates[i])}
                for i in range(len(self.specs))
            ],
        }

    def label(self, index: int) -> str:
        if index == 0:
            return "as the policy"
        return self.tuning.candidates[index - 1].label()

    def serialize(self) -> bytes:
        blobs = [m.serialize() for m in self.models]
        header = json.dumps(
            {
                "leader": self.leader,
                "switches": self.switches,
                "learned": self.learned,
                "validation": self.validation.to_dict(),
                "drift": self.drift.to_dict(),
                "sizes": [len(b) for b in blobs],
                "vw_args": [s.score_args() for s in self.specs],
            }
        ).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)

    def _restore(self, data: bytes) -> None:
        if not data.startswith(MAGIC):
            raise VWError("the model is not a tuned model: train it again with this spec")
        offset = len(MAGIC)
        try:
            (length,) = struct.unpack_from("<I", data, offset)
            header = json.loads(data[offset + 4 : offset + 4 + length])
        except (struct.error, ValueError) as exc:
            raise VWError(f"the tuned model's header is unreadable: {exc}") from exc
        if header["vw_args"] != [s.score_args() for s in self.specs]:
            raise VWError("the tuned model's candidates differ from the spec's")
        offset += 4 + length
        self.models = []
        for size in header["sizes"]:
            self.models.append(CBModel(model_data=data[offset : offset + size]))
            offset += size
        self.validation = ProgressiveValidation.from_dict(header["validation"])
        self.leader = int(header["leader"])
        self.switches = int(header["switches"])
        self.learned = int(header["learned"])
        if "drift" in header:
            self.drift = DriftMonitor.from_dict(header["drift"])
