"""Progressive validation: paired estimates, confidence, decay, and an exact round trip."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.exploration import squarecb
from optimizer.core.selection import ProgressiveValidation

rows = st.lists(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3), min_size=2, max_size=60
)


@given(rows)
@settings(max_examples=60, deadline=None)
def test_without_decay_the_estimates_are_plain_means_and_the_difference_is_paired(
    values: list[list[float]],
) -> None:
    pv = ProgressiveValidation(3)
    for v in values:
        pv.add(v)
    data = np.asarray(values)
    assert np.allclose(pv.estimates(), data.mean(axis=0))
    mean, error = pv.difference(1, 0)
    paired = data[:, 1] - data[:, 0]
    assert math.isclose(mean, paired.mean(), abs_tol=1e-9)
    expected = math.sqrt(max(paired.var(), 0.0) / len(values))
    assert math.isclose(error, expected, rel_tol=1e-6, abs_tol=1e-6)  # sqrt of a rounding error


@given(rows)
@settings(max_examples=40, deadline=None)
def test_a_round_trip_keeps_every_sum(values: list[list[float]]) -> None:
    pv = ProgressiveValidation(3, half_life=500)
    for v in values:
        pv.add(v)
    back = ProgressiveValidation.from_dict(pv.to_dict())
    assert back.to_dict() == pv.to_dict()
    assert back.challenger(0, z=1.0, min_rewards=1) == pv.challenger(0, z=1.0, min_rewards=1)


def test_a_clearly_better_candidate_wins_only_with_enough_rewards() -> None:
    rng = np.random.default_rng(3)
    pv = ProgressiveValidation(3)
    for _ in range(400):
        noise = rng.normal(size=3) * 0.1
        pv.add([0.0 + noise[0], 0.05 + noise[1], 0.0 + noise[2]])
        if pv.count < 100:
            assert pv.challenger(0, z=2.0, min_rewards=100) is None
    assert pv.challenger(0, z=2.0, min_rewards=100) == 1
    assert pv.challenger(1, z=2.0, min_rewards=100) is None


def test_equal_candidates_never_displace_the_leader() -> None:
    pv = ProgressiveValidation(2)
    for value in np.random.default_rng(5).normal(size=1000):
        pv.add([value, value])
    assert pv.challenger(0, z=0.5, min_rewards=1) is None


def test_decay_lets_the_recent_past_decide() -> None:
    pv = ProgressiveValidation(2, half_life=200)
    for _ in range(3000):
        pv.add([1.0, 0.0])
    for _ in range(3000):
        pv.add([0.0, 1.0])
    assert pv.effective_count() < pv.count
    assert pv.challenger(0, z=2.0, min_rewards=1) == 1


@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=40),
    st.integers(0, 100_000),
    st.floats(0.1, 1000),
)
@settings(max_examples=80, deadline=None)
def test_squarecb_is_a_distribution_that_favours_the_lowest_cost(
    costs: list[float], learned: int, gamma_scale: float
) -> None:
    c = np.asarray(costs)
    pmf = squarecb(c, gamma_scale=gamma_scale, learned=learned)
    assert math.isclose(float(pmf.sum()), 1.0, rel_tol=1e-9)
    assert (pmf >= 0).all()
    assert pmf[int(np.argmin(c))] >= pmf.max() - 1e-12  # ties: the best gets 1 - the rest
    order = np.argsort(c, kind="stable")
    rest = pmf[order[1:]]
    assert (np.diff(rest) <= 1e-12).all()


def test_squarecb_explores_less_as_it_learns() -> None:
    costs = np.array([-0.5, -0.4, -0.1])
    early = squarecb(costs, gamma_scale=10.0, learned=10)
    late = squarecb(costs, gamma_scale=10.0, learned=10_000)
    assert late[0] > early[0]
