"""Properties of the synthetic bandit environments and a tiny end-to-end run of the suite."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bandit_suite import LEARNERS, EnvSpec, run_suite
from benchmarks.environments import KINDS, Environment, Kind, delivery_schedule

ROUNDS = 600


@pytest.mark.parametrize("k", [5, 50, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_mu_stays_in_unit_interval_for_every_kind_and_k(kind: Kind, k: int) -> None:
    mu = Environment(kind, k, seed=3, rounds=200).mu_table
    assert mu.shape == (200, k)
    assert np.all((mu >= 0.0) & (mu <= 1.0))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_same_contexts_mu_and_draws(kind: Kind) -> None:
    a, b = Environment(kind, 5, seed=7, rounds=ROUNDS), Environment(kind, 5, seed=7, rounds=ROUNDS)
    np.testing.assert_array_equal(a.contexts, b.contexts)
    np.testing.assert_array_equal(a.mu_table, b.mu_table)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert [a.reward(t, 1) for t in range(50)] == [b.reward(t, 1) for t in range(50)]


@pytest.mark.parametrize("kind", KINDS)
def test_different_seeds_give_different_environments(kind: Kind) -> None:
    a, b = Environment(kind, 5, seed=1, rounds=ROUNDS), Environment(kind, 5, seed=2, rounds=ROUNDS)
    assert not np.allclose(a.contexts, b.contexts)
    assert not np.allclose(a.mu_table, b.mu_table)
    assert not np.allclose(a.draws, b.draws)


@pytest.mark.parametrize("k", [5, 50])
@pytest.mark.parametrize("kind", KINDS)
def test_oracle_beats_uniform_by_a_clear_margin_and_uniform_is_near_half(
    kind: Kind, k: int
) -> None:
    env = Environment(kind, k, seed=0, rounds=2_000)
    assert abs(env.uniform_expected() - 0.5) < 0.06
    assert env.oracle_expected() - env.uniform_expected() > 0.15


def test_observed_reward_is_one_exactly_when_the_draw_is_below_mu() -> None:
    env = Environment("linear", 5, seed=4, rounds=ROUNDS)
    for t in range(0, ROUNDS, 37):
        for a in range(5):
            assert env.reward(t, a) == float(env.draws[t] < env.mu(t)[a])


@pytest.mark.parametrize("delay", [0, 1, 500])
def test_delivery_schedule_delivers_every_reward_once_and_never_early(delay: int) -> None:
    rounds = 1_200
    slots = delivery_schedule(rounds, delay)
    delivered = [t for slot in slots for t in slot]
    assert sorted(delivered) == list(range(rounds))
    for r, slot in enumerate(slots):
        assert all(r == t + delay for t in slot)


def test_delay_variant_learns_at_round_plus_d_and_stationary_right_away() -> None:
    delayed = Environment("linear", 5, seed=0, rounds=ROUNDS, variant="delay", delay=100)
    assert all(r == t + 100 for r, slot in enumerate(delayed.schedule()) for t in slot)
    plain = Environment("linear", 5, seed=0, rounds=ROUNDS)
    assert plain.schedule()[:ROUNDS] == [[t] for t in range(ROUNDS)]


def test_drift_changes_mu_after_halfway_only() -> None:
    drift = Environment("mlp", 5, seed=5, rounds=ROUNDS, variant="drift")
    still = Environment("mlp", 5, seed=5, rounds=ROUNDS)
    half = ROUNDS // 2
    np.testing.assert_array_equal(drift.mu_table[:half], still.mu_table[:half])
    assert np.abs(drift.mu_table[half:] - still.mu_table[half:]).mean() > 0.05
    np.testing.assert_array_equal(drift.contexts, still.contexts)


def test_suite_runs_every_learner_end_to_end_with_rewards_in_unit_interval() -> None:
    result = run_suite(
        [EnvSpec("linear", 5)],
        seeds=1,
        rounds=120,
        learners=[*LEARNERS, "ours:lr"],
        specs={"ours:lr": {"learning_rate": 0.5}},
        jobs=1,
    )
    (run,) = result["runs"]
    assert set(run["learners"]) == {*LEARNERS, "ours:lr"}
    for fig in run["learners"].values():
        for name in ("mean", "last", "expected_mean", "expected_last"):
            assert 0.0 <= fig[name] <= 1.0
    assert result["summary"]["environments"] == 1
    again = run_suite(
        [EnvSpec("linear", 5)],
        seeds=1,
        rounds=120,
        learners=["ours", "vw-defaults"],
        specs={},
        jobs=1,
    )
    for key in ("ours", "vw-defaults"):
        assert again["runs"][0]["learners"][key]["mean"] == run["learners"][key]["mean"]
