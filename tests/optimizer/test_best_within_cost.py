"""The oracle within a cost limit: the best any cost-limited distribution can expect."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optimizer.cost_limit import best_within_cost, cap_expected_cost, expected_cost

Case = tuple[np.ndarray, np.ndarray, float]  # type: ignore[type-arg]
EPS = 1e-9


@st.composite
def decisions(draw: st.DrawFn) -> Case:
    k = draw(st.integers(1, 12))
    rates = draw(arrays(np.float64, k, elements=st.floats(0.0, 1.0)))
    costs = draw(
        arrays(
            np.float64,
            k,
            elements=st.sampled_from([0.0, 1.5, 2.5, 8.0, 10.79, 11.99])
            | st.floats(0.0, 20.0).map(lambda c: round(c, 2)),
        )
    )
    limit = draw(st.floats(0.0, 25.0))
    return rates, costs, limit


@given(case=decisions())
def test_constrained_oracle_never_beats_the_best_candidate(case: Case) -> None:
    rates, costs, limit = case
    assert best_within_cost(rates, costs, limit) <= rates.max() + EPS


@given(case=decisions())
def test_constrained_oracle_is_the_best_candidate_when_it_is_affordable(case: Case) -> None:
    rates, costs, _ = case
    dearest_best = float(costs[rates == rates.max()].min())
    assert best_within_cost(rates, costs, dearest_best) == rates.max()
    assert best_within_cost(rates, costs, dearest_best + 1.0) == rates.max()


@given(case=decisions(), weights=arrays(np.float64, 12, elements=st.floats(0.0, 1.0)))
def test_constrained_oracle_beats_any_distribution_within_the_limit(
    case: Case,
    weights: np.ndarray,  # type: ignore[type-arg]
) -> None:
    rates, costs, limit = case
    w = weights[: len(rates)] + 1e-3
    pmf = cap_expected_cost(w / w.sum(), costs, limit)
    # within the limit up to rounding, or spread over the cheapest when nothing is affordable
    assert expected_cost(pmf, costs) <= max(limit, costs.min()) + 1e-9
    assert float(np.dot(pmf, rates)) <= best_within_cost(rates, costs, limit) + EPS


@given(case=decisions())
def test_constrained_oracle_is_at_least_the_best_affordable_candidate(case: Case) -> None:
    rates, costs, limit = case
    affordable = costs <= limit
    if affordable.any():
        assert best_within_cost(rates, costs, limit) >= rates[affordable].max()
    else:
        cheapest = rates[costs == costs.min()].max()
        assert best_within_cost(rates, costs, limit) == cheapest


@given(case=decisions(), more=st.floats(0.0, 10.0))
def test_constrained_oracle_grows_with_the_limit(case: Case, more: float) -> None:
    rates, costs, limit = case
    assert (
        best_within_cost(rates, costs, limit) <= best_within_cost(rates, costs, limit + more) + EPS
    )


def test_a_cheap_and_a_dear_candidate_mix_to_spend_the_limit() -> None:
    rates = np.array([0.1, 0.5])
    costs = np.array([0.0, 10.0])
    # a quarter on the dear offer spends 2.5 on average
    assert best_within_cost(rates, costs, 2.5) == pytest.approx(0.1 + 0.25 * 0.4)


def test_constrained_oracle_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="costs"):
        best_within_cost(np.array([0.1, 0.2]), np.array([1.0]), 1.0)
    with pytest.raises(ValueError, match="costs"):
        best_within_cost(np.array([0.1]), np.array([-1.0]), 1.0)
    with pytest.raises(ValueError, match="limit"):
        best_within_cost(np.array([0.1]), np.array([1.0]), -1.0)
    with pytest.raises(ValueError, match="rates"):
        best_within_cost(np.array([]), np.array([]), 1.0)


@settings(deadline=None)
@given(case=decisions())
def test_constrained_oracle_is_the_linear_programme_optimum(case: Case) -> None:
    from scipy.optimize import linprog

    rates, costs, limit = case
    if costs.min() > limit:
        return
    k = len(rates)
    solution = linprog(
        -rates,
        A_ub=costs[None, :],
        b_ub=[limit],
        A_eq=np.ones((1, k)),
        b_eq=[1.0],
        bounds=[(0, None)] * k,
    )
    assert solution.status == 0
    assert best_within_cost(rates, costs, limit) == pytest.approx(-solution.fun, abs=1e-7)
