"""Replay: built-in target policies give valid distributions aligned with the log."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_eval import (
    BestFixedAction,
    EpsilonGreedy,
    FixedRule,
    LoggedBandit,
    Uniform,
    fixed_action_values,
    logging_policy,
    replay,
)
from tests.offline_eval.helpers import random_log


def small_log() -> LoggedBandit:
    return LoggedBandit(
        offsets=np.array([0, 3, 5, 6]),
        action_ids=np.array([7, 8, 9, 8, 9, 9]),
        chosen_index=np.array([0, 1, 0]),
        logged_probability=np.array([0.5, 0.5, 1.0]),
        reward=np.array([1.0, 0.0, 1.0]),
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), epsilon=st.floats(0.0, 1.0))
def test_every_built_in_policy_gives_a_distribution_per_row(seed: int, epsilon: float) -> None:
    rng = np.random.default_rng(seed)
    data = random_log(rng, 60, target=False)
    scores = rng.integers(0, 3, size=data.n_candidates).astype(float)  # ties on purpose
    policies = [
        Uniform(),
        FixedRule(lambda d: d.sizes - 1),
        EpsilonGreedy(scores, epsilon=epsilon),
        BestFixedAction({3: 0.9, 5: 0.4}),
    ]
    for policy in policies:
        probs = replay(data, policy=policy)
        assert probs.shape == (data.n_candidates,)
        np.testing.assert_allclose(np.add.reduceat(probs, data.offsets[:-1]), 1.0)


def test_epsilon_greedy_puts_the_rest_on_the_best_and_splits_ties() -> None:
    data = small_log()
    probs = replay(
        data, policy=EpsilonGreedy(np.array([0.1, 0.9, 0.3, 0.5, 0.5, 0.0]), epsilon=0.3)
    )
    np.testing.assert_allclose(probs, [0.1, 0.8, 0.1, 0.5, 0.5, 1.0])


def test_best_fixed_action_plays_the_best_present_action_and_uniform_where_none() -> None:
    data = small_log()
    probs = replay(data, policy=BestFixedAction({8: 0.7, 9: 0.2}))
    np.testing.assert_allclose(probs, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    only_seven = replay(data, policy=BestFixedAction({7: 0.5}))
    np.testing.assert_allclose(only_seven, [1.0, 0.0, 0.0, 0.5, 0.5, 1.0])


def test_fixed_action_values_are_self_normalised_per_action() -> None:
    data = small_log()
    values = fixed_action_values(data, min_count=1)
    # action 9: rewards 0 (p = 0.5) and 1 (p = 1): (0 / 0.5 + 1 / 1) / (1 / 0.5 + 1 / 1) = 1 / 3
    assert values == pytest.approx({7: 1.0, 9: 1 / 3})
    assert fixed_action_values(data, min_count=2) == pytest.approx({9: 1 / 3})


def test_replay_rejects_a_policy_that_is_not_a_distribution() -> None:
    data = small_log()
    with pytest.raises(ValueError, match="target_probabilities: 3 of 3 rows do not sum to 1"):
        replay(data, policy=lambda d: np.full(d.n_candidates, 0.2))
    with pytest.raises(ValueError, match="pick: 1 of 3 rows pick outside"):
        replay(data, policy=FixedRule(lambda d: np.array([0, 2, 0])))


def test_logging_policy_needs_the_whole_distribution() -> None:
    with pytest.raises(ValueError, match="logging_probabilities: the full logged distribution"):
        logging_policy(small_log())
