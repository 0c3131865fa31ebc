"""Pricing offer cost into a policy's predictions keeps the frame's limit and spends it where
the predictions say it earns most."""

from __future__ import annotations

import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optimizer.core.exploration import squarecb
from optimizer.core.policy_spec import PolicySpec
from optimizer.cost_limit import (
    best_within_cost,
    cap_expected_cost,
    expected_cost,
    price_within_cost,
)
from optimizer.policy import BanditPolicy, mix_with_uniform

FloatArray = np.ndarray  # type: ignore[type-arg]
EPS = 1e-9


@st.composite
def decisions(draw: st.DrawFn) -> tuple[FloatArray, FloatArray, float]:
    """Predicted rewards, offer costs (a free candidate among them) and a limit."""
    k = draw(st.integers(2, 12))
    rates = draw(arrays(np.float64, k, elements=st.floats(0.0, 1.0), unique=True))
    costs = draw(arrays(np.float64, k, elements=st.sampled_from([0.0, 1.5, 2.5, 10.79, 11.99])))
    costs[draw(st.integers(0, k - 1))] = 0.0
    limit = draw(st.floats(0.0, 12.0))
    return rates, costs, limit


def greedy(rates: FloatArray, costs: FloatArray):  # type: ignore[no-untyped-def]
    """All mass on the best candidate after the price, ties to the cheaper one."""

    def at(price: float) -> FloatArray:
        scores = rates - price * costs
        best = np.flatnonzero(scores >= scores.max() - 1e-15)
        pmf = np.zeros(len(rates))
        pmf[best[np.argmin(costs[best])]] = 1.0
        return pmf

    return at


@given(case=decisions())
def test_a_greedy_policy_priced_within_the_limit_reaches_the_constrained_oracle(
    case: tuple[FloatArray, FloatArray, float],
) -> None:
    """The Lagrangian of the one-constraint LP: at the right price, mixing its two sides is the
    LP's optimum."""
    rates, costs, limit = case
    pmf = price_within_cost(greedy(rates, costs), costs, limit)
    assert abs(pmf.sum() - 1.0) < EPS
    assert (pmf >= -EPS).all()
    assert expected_cost(pmf, costs) <= limit + 1e-7
    assert float(pmf @ rates) >= best_within_cost(rates, costs, limit) - 1e-6


@settings(max_examples=200)
@given(
    case=decisions(),
    learned=st.integers(1, 50_000),
    floor=st.floats(0.0, 0.2),
)
def test_priced_squarecb_keeps_the_limit_and_spends_it_when_it_binds(
    case: tuple[FloatArray, FloatArray, float], learned: int, floor: float
) -> None:
    rates, costs, limit = case

    def at(price: float) -> FloatArray:
        return mix_with_uniform(
            squarecb(price * costs - rates, gamma_scale=400.0, learned=learned), floor
        )

    priced = cap_expected_cost(price_within_cost(at, costs, limit), costs, limit)
    assert abs(priced.sum() - 1.0) < EPS
    assert (priced >= 0).all()
    spent = expected_cost(priced, costs)
    assert spent <= limit + 1e-7
    floor_alone = floor * float(costs.mean())
    if expected_cost(at(0.0), costs) > limit and floor_alone < limit:
        assert spent >= limit - 1e-6


def test_a_distribution_within_the_limit_is_not_priced() -> None:
    costs = np.array([0.0, 2.5, 0.0])
    calls: list[float] = []

    def at(price: float) -> FloatArray:
        calls.append(price)
        return np.array([0.2, 0.6, 0.2]) if price == 0.0 else np.array([1.0, 0.0, 0.0])

    assert np.array_equal(price_within_cost(at, costs, 5.0), np.array([0.2, 0.6, 0.2]))
    assert calls == [0.0]


def test_a_tuned_policy_under_a_binding_limit_spends_it_on_its_best_cheap_candidate() -> None:
    """Two dear offers the model rates best and three free ones of which it rates one best:
    the mass the limit takes from the dear offers goes to that free one, not evenly to all."""
    actions = ["|o dear_a", "|o dear_b", "|o free_good", "|o free_poor", "|o free_worst"]
    costs = np.array([12.0, 10.0, 0.0, 0.0, 0.0])
    converts = np.array([0.6, 0.5, 0.4, 0.1, 0.05])
    policy = BanditPolicy(PolicySpec(), name="priced")
    rng = np.random.default_rng(3)
    for t in range(3000):
        choice = policy.choose(
            "shared |c x", actions, decision_id=uuid.UUID(int=t), floor_share=0.05
        )
        reward = float(rng.random() < converts[choice.index])
        policy.learn(
            "shared |c x",
            actions,
            chosen=choice.index,
            reward=reward,
            probability=choice.probability,
        )
    pmf = policy.distribution(
        "shared |c x", actions, floor_share=0.05, costs=costs, max_expected_cost=4.0
    )
    assert expected_cost(pmf, costs) <= 4.0 + 1e-9
    assert expected_cost(pmf, costs) >= 4.0 - 1e-6
    assert pmf[2] > 5 * max(pmf[3], pmf[4])
