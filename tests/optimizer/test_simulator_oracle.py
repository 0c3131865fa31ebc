"""The simulator's oracle within the frames' cost limits, decision by decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import api.demo
from api.demo import run_demo
from optimizer.core.catalog import CatalogSpec
from optimizer.simulator.run import SimulationConfig, SimulationResult


def test_oracle_within_limits_is_below_the_oracle_and_equal_where_no_limit_binds(
    tmp_path: Path, example_catalog: CatalogSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # reactivation's limit at its max_offer_cost: no candidate can break it
    frames = [
        f.model_copy(
            update={
                "guardrails": f.guardrails.model_copy(
                    update={"max_offer_cost_per_decision": f.max_offer_cost}
                )
            }
        )
        if f.key == "reactivation"
        else f
        for f in example_catalog.frames
    ]
    catalog = example_catalog.model_copy(update={"frames": frames})
    results: list[SimulationResult] = []
    summarize = api.demo.summarize

    def keep(result: SimulationResult, **kwargs: Any) -> dict[str, Any]:
        results.append(result)
        return summarize(result, **kwargs)

    monkeypatch.setattr(api.demo, "summarize", keep)
    demo = run_demo(
        catalog=catalog,
        out=tmp_path,
        config=SimulationConfig(customers=600, days=8, seed=5),
        register=False,
    )
    stats = results[0].stats
    oracle = np.asarray(stats.oracle)
    within = np.asarray(stats.oracle_within_limits)
    frame = np.asarray(stats.frame)
    assert len(within) == len(oracle) > 50
    assert (within <= oracle + 1e-12).all()
    unlimited = frame == "reactivation"
    assert unlimited.any()
    assert np.array_equal(within[unlimited], oracle[unlimited])
    assert (within[~unlimited] < oracle[~unlimited]).any()
    summary = demo.summary
    rates = summary["conversion_rate"]
    assert rates["uniform"] <= rates["oracle_within_limits"] <= rates["oracle"]
    if rates["policy"] >= rates["uniform"]:
        assert summary["lift_capture"] >= summary["lift_capture_unconstrained"]
