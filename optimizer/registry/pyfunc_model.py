"""The MLflow pyfunc flavour of a policy (logged as "model from code").

`mlflow.pyfunc.load_model("models:/campopt-<frame>@champion")` gives a model whose `predict`
takes a DataFrame with one row per decision: the context columns the decision log stores
(health_class, usage_index, tenure_days, language, trigger, hour, weekday, attributes) and
`candidates`, a list of action signatures ("offer|text|channel|send_time" or "no_contact"). It
returns the policy's distribution over each row's candidates and the most likely candidate.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from optimizer.core.policy_spec import PolicySpec
from optimizer.features import shared_line
from optimizer.policy import BanditPolicy


class PolicyPythonModel(PythonModel):
    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        with open(artifacts["spec"], encoding="utf-8") as f:
            spec = PolicySpec.model_validate_json(f.read())
        with open(artifacts["meta"], encoding="utf-8") as f:
            meta = json.load(f)
        with open(artifacts["actions"], encoding="utf-8") as f:
            self.action_lines: dict[str, str] = json.load(f)
        with open(artifacts["model"], "rb") as f:
            self.policy = BanditPolicy(
                spec,
                name=meta["name"],
                version=str(meta.get("version", "")),
                model_data=f.read(),
                examples_learned=int(meta["examples_learned"]),
            )
        self.floor_share = float(meta.get("floor_share", spec.min_probability_share))

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Untyped on purpose: MLflow would try to derive a schema from type hints."""
        distributions, best = [], []
        frame = pd.DataFrame(model_input)
        for row in frame.to_dict(orient="records"):
            candidates = list(row["candidates"])
            missing = [c for c in candidates if c not in self.action_lines]
            if missing:
                raise ValueError(f"candidates: unknown action {missing[0]!r}")
            lines = [self.action_lines[c] for c in candidates]
            distribution = self.policy.distribution(
                shared_line({str(k): v for k, v in row.items()}),
                lines,
                floor_share=self.floor_share,
            )
            distributions.append(distribution.tolist())
            best.append(candidates[int(distribution.argmax())])
        return pd.DataFrame({"probabilities": distributions, "best": best})


mlflow.models.set_model(PolicyPythonModel())
