"""The budget benchmark on a small week: properties of its policies and its LP."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.budget_pacing import (
    FRAME,
    SCENARIOS,
    hindsight_lp,
    run_policy,
    simulate_week,
    snapshot_with_budget,
)
from optimizer.simulator.truth import GroundTruth


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_paced_and_fcfs_stay_within_the_budget_and_below_the_hindsight_optimum(
    scenario: str,
) -> None:
    limit = 300.0
    budget = SCENARIOS[scenario].model_copy(update={"limit": limit})
    snapshot = snapshot_with_budget(budget)
    truth = GroundTruth.for_snapshot(snapshot)
    frame = next(f for f in snapshot.frames if f.key == FRAME)
    week = simulate_week(snapshot, truth, frame, budget, 1500, seed=1)
    lp, none, lp_spent = hindsight_lp(week, limit)
    assert lp_spent <= limit + 1e-6
    # the LP with one unit-weight budget is the top-`limit` positive gains
    gains = np.sort(
        [
            r[b].max(initial=-1.0) - r[~b].max()
            for r, b in zip(week.rates, week.budgeted, strict=True)
        ]
    )
    assert lp == pytest.approx(none + np.clip(gains[::-1][: int(limit)], 0, None).sum())
    for paced in (True, False):
        conversions, spent = run_policy(week, snapshot, frame, limit=limit, paced=paced)
        assert spent <= limit
        assert none - 1e-9 <= conversions <= lp + 1e-9
    _, paced_spent = run_policy(week, snapshot, frame, limit=limit, paced=True)
    assert paced_spent >= 0.97 * limit
