"""Reward models and cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest

from offline_eval import (
    Features,
    LogisticRewardModel,
    RewardModel,
    RidgeRewardModel,
    action_features,
    cross_fit,
)
from offline_eval.synthetic import SyntheticEnvironment, SyntheticSetting
from tests.offline_eval.helpers import random_log


class SpyModel:
    """Remembers which rows it was trained on (their id is context column 0) and predicts 1.0
    for a row it saw, 0.0 otherwise."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def fit(
        self,
        *,
        context: np.ndarray,
        action_table: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
    ) -> None:
        self.seen = set(context[:, 0].astype(int).tolist())

    def predict(
        self,
        *,
        context: np.ndarray,
        action_table: np.ndarray,
        row: np.ndarray,
        action: np.ndarray,
    ) -> np.ndarray:
        ids = context[row, 0].astype(int)
        return np.array([1.0 if i in self.seen else 0.0 for i in ids.tolist()])


def test_cross_fitting_never_scores_a_row_with_a_model_that_saw_it(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 300)
    row_ids = np.arange(data.n, dtype=float)[:, None]
    features = action_features(data, context=np.hstack([row_ids, rng.normal(size=(data.n, 2))]))
    fitted = cross_fit(data, features=features, model=SpyModel, n_folds=4, rng=rng)
    assert isinstance(SpyModel(), RewardModel)
    assert np.all(fitted.predictions == 0.0)
    assert np.bincount(fitted.folds).tolist() == [75, 75, 75, 75]


def test_logistic_model_learns_a_well_specified_reward() -> None:
    rng = np.random.default_rng(11)
    env = SyntheticEnvironment(SyntheticSetting(n_actions=10, population=20000), rng)
    sample = env.sample(20000, rng)
    fitted = cross_fit(sample.data, features=sample.features, rng=rng)
    error = np.abs(fitted.predictions - sample.expected_reward)
    assert float(error.mean()) < 0.03
    assert np.all((fitted.predictions > 0) & (fitted.predictions < 1))


def test_ridge_model_is_least_squares_on_interaction_features(rng: np.random.Generator) -> None:
    m, dc, actions = 400, 3, 4
    context = rng.normal(size=(m, dc))
    table = rng.normal(size=(actions, 2))
    action = rng.integers(0, actions, size=m)
    reward = rng.normal(size=m)
    model = RidgeRewardModel(l2=1e-9)
    model.fit(context=context, action_table=table, action=action, reward=reward)
    scaled = (context - context.mean(axis=0)) / context.std(axis=0)
    x = np.hstack([np.ones((m, 1)), scaled])
    a = np.hstack([np.ones((actions, 1)), table])[action]
    design = np.einsum("ij,ik->ijk", x, a).reshape(m, -1)
    expected = design @ np.linalg.lstsq(design, reward, rcond=None)[0]
    predicted = model.predict(context=context, action_table=table, row=np.arange(m), action=action)
    np.testing.assert_allclose(predicted, expected, atol=1e-6)


def test_logistic_model_needs_rewards_in_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"reward: 1 of 3 rows are outside \[0, 1\]"):
        LogisticRewardModel().fit(
            context=np.zeros((3, 1)),
            action_table=np.eye(2),
            action=np.array([0, 1, 0]),
            reward=np.array([0.0, 1.0, 2.0]),
        )


def test_features_are_checked_against_the_log(rng: np.random.Generator) -> None:
    data = random_log(rng, 20)
    features = Features(
        context=np.zeros((19, 2)),
        action_table=np.eye(3),
        candidate_action=np.zeros(data.n_candidates, dtype=np.int64),
    )
    with pytest.raises(ValueError, match="context: has 19 rows, expected 20"):
        cross_fit(data, features=features)
    with pytest.raises(ValueError, match="table: no features for"):
        action_features(data, context=np.zeros((20, 1)), table={1: [0.0]})
