"""The only module that talks to Vowpal Wabbit (vowpal-wabbit-next).

Parsing K+1 text lines per request dominates a naive implementation, so action examples are
parsed once and reused (the shared example is fresh each time); this gives the same predictions
and the same learned weights as parsing everything anew, which the tests check. VW holds the GIL
in predict and learn, so a lock around the workspace costs nothing and keeps the example cache
safe when a server runs handlers in threads.

`CBModel` calls the binding's core workspace directly for predict and learn: the Python wrapper
re-reads the workspace's label type for every example on every call (about 1 µs a candidate,
a third of a 100-candidate predict), and all our examples come from this workspace's own parser.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import vowpal_wabbit_next as vw
from vowpal_wabbit_next import _core

VW_VERSION: str = vw.VW_VERSION


class VWError(ValueError):
    """A model or an example VW refuses."""


class CBModel:
    """A `--cb_explore_adf` workspace with a cache of parsed action examples.

    VW minimises cost; callers pass costs (see `optimizer.policy.reward_to_cost`).
    """

    def __init__(self, args: Sequence[str] | None = None, *, model_data: bytes | None = None):
        try:
            if model_data is not None:
                self._workspace = vw.Workspace(["--quiet"], model_data=model_data)
            else:
                self._workspace = vw.Workspace(list(args or []))
        except Exception as exc:  # VW raises its own errors for bad args or bytes
            raise VWError(f"vowpal wabbit refused the model: {exc}") from exc
        if not self._workspace.multiline:
            raise VWError("the model is not a multi-line (ADF) contextual-bandit model")
        self._core = self._workspace._workspace
        self._actions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.max_cached_actions = 200_000

    def _parse(self, line: str) -> Any:
        return _core._parse_line_text(self._core, line)

    def _action(self, line: str) -> Any:
        example = self._actions.get(line)
        if example is None:
            if len(self._actions) >= self.max_cached_actions:
                self._actions.clear()
            example = self._parse(line)
            self._actions[line] = example
        return example

    def _examples(self, shared: str, actions: Sequence[str]) -> list[Any]:
        """The shared example, then each action's cached one (looked up inline: this runs
        for every candidate of every prediction and update)."""
        cached = self._actions
        examples = [self._parse(shared)]
        for line in actions:
            example = cached.get(line)
            examples.append(example if example is not None else self._action(line))
        return examples

    def predict(self, shared: str, actions: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The explore distribution over `actions`, in their order (a `--cb_adf` regressor
        gives its predicted costs instead)."""
        with self._lock:
            examples = self._examples(shared, actions)
            scores = cast(list[tuple[int, float]], self._core.predict_multi_ex_one(examples))
        pmf = np.zeros(len(actions), dtype=np.float64)
        for index, probability in scores:
            pmf[index] = probability
        return pmf

    def learn(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        chosen: int,
        cost: float,
        probability: float,
    ) -> None:
        """One contextual-bandit update: `chosen` was taken with `probability` and cost `cost`."""
        self._learn(shared, actions, chosen, cost, probability, predict=False)

    def predict_then_learn(
        self,
        shared: str,
        actions: Sequence[str],
        *,
        chosen: int,
        cost: float,
        probability: float,
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """`learn`, returning the explore distribution the model had before the update.

        VW computes that distribution inside the update anyway, so progressive validation costs
        no second pass over the candidates (the tests check it equals `predict` beforehand).
        """
        scores = self._learn(shared, actions, chosen, cost, probability, predict=True)
        pmf = np.zeros(len(actions), dtype=np.float64)
        for index, p in scores:
            pmf[index] = p
        return pmf

    def _learn(
        self,
        shared: str,
        actions: Sequence[str],
        chosen: int,
        cost: float,
        probability: float,
        *,
        predict: bool,
    ) -> list[tuple[int, float]]:
        if not 0 <= chosen < len(actions):
            raise VWError(f"chosen index {chosen} outside {len(actions)} actions")
        if not 0.0 < probability <= 1.0:
            raise VWError(f"probability {probability} outside (0, 1]")
        with self._lock:
            examples = self._examples(shared, actions)
            chosen_example = examples[chosen + 1]
            chosen_example._set_label(vw.CBLabel(label=(float(cost), float(probability))))
            try:
                if predict:
                    return cast(
                        list[tuple[int, float]],
                        self._core.predict_then_learn_multi_ex_one(examples),
                    )
                self._core.learn_multi_ex_one(examples)
                return []
            finally:
                chosen_example._set_label(vw.CBLabel())

    def serialize(self) -> bytes:
        with self._lock:
            return bytes(self._workspace.serialize())


class RegressionModel:
    """A squared-loss VW regressor, used as a reward model for DM and DR estimates."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        self._workspace = vw.Workspace(["--quiet", *args])
        self._parser = vw.TextFormatParser(self._workspace)

    def learn(self, label: float, features: str, *, weight: float = 1.0) -> None:
        self._workspace.learn_one(self._parser.parse_line(f"{label} {weight} {features}"))

    def predict(self, features: str) -> float:
        return float(cast(float, self._workspace.predict_one(self._parser.parse_line(features))))


def parse_dsjson(line: str, args: Sequence[str] = ("--cb_explore_adf",)) -> list[dict[str, Any]]:
    """Parse one DSJSON record with VW's own parser; returns each example's label and features.

    Used to prove that exported logs are readable by VW's tools.
    """
    workspace = vw.Workspace(["--quiet", *args])
    parser = vw.DSJsonFormatParser(workspace)
    try:
        examples = parser.parse_json(line)
    except Exception as exc:
        raise VWError(f"VW cannot parse the DSJSON record: {exc}") from exc
    out = []
    for example in examples:
        label = example.get_label()
        out.append(
            {
                "label": getattr(label, "label", None),
                "shared": bool(getattr(label, "shared", False)),
                "features": sum(len(group.indices) for group in example),
            }
        )
    return out
