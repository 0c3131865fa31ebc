"""The logged dataset: validation names the field and the number of rows affected."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from offline_eval import LoggedBandit
from tests.offline_eval.helpers import random_log


def valid_fields() -> dict[str, Any]:
    """Three decisions with 2, 3 and 1 candidates."""
    return {
        "offsets": np.array([0, 2, 5, 6]),
        "action_ids": np.array([1, 2, 1, 3, 4, 2]),
        "chosen_index": np.array([0, 2, 0]),
        "logged_probability": np.array([0.5, 0.2, 1.0]),
        "reward": np.array([1.0, 0.0, 1.0]),
        "logging_probabilities": np.array([0.5, 0.5, 0.3, 0.5, 0.2, 1.0]),
        "target_probabilities": np.array([1.0, 0.0, 0.2, 0.2, 0.6, 1.0]),
    }


def test_valid_log_exposes_sizes_weights_and_chosen_actions() -> None:
    data = LoggedBandit(**valid_fields())
    assert data.n == 3
    assert data.sizes.tolist() == [2, 3, 1]
    assert data.chosen_action_ids.tolist() == [1, 4, 2]
    np.testing.assert_allclose(data.importance_weights, [2.0, 3.0, 1.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"logged_probability": np.array([0.5, 0.0, 1.0])},
            r"logged_probability: 1 of 3 rows are 0",
        ),
        (
            {"logged_probability": np.array([np.nan, 0.2, np.nan])},
            r"logged_probability: 2 of 3 rows are missing",
        ),
        (
            {"logged_probability": np.array([0.5, 1.5, 1.0])},
            r"logged_probability: 1 of 3 rows are above 1",
        ),
        ({"reward": np.array([1.0, np.nan, 1.0])}, r"reward: 1 of 3 rows are missing"),
        (
            {"reward": np.array([1.0, 2.0, 3.0]), "reward_range": (0.0, 1.0)},
            r"reward: 2 of 3 rows are outside reward_range",
        ),
        (
            {"logging_probabilities": np.array([0.5, 0.6, 0.3, 0.5, 0.2, 0.9])},
            r"logging_probabilities: 2 of 3 rows do not sum to 1",
        ),
        (
            {"logging_probabilities": np.array([0.5, 0.5, 0.3, 0.2, 0.5, 1.0])},
            r"logging_probabilities: 1 of 3 rows disagree with logged_probability",
        ),
        (
            {"logging_probabilities": np.array([1.5, -0.5, 0.3, 0.5, 0.2, 1.0])},
            r"logging_probabilities: 1 of 3 rows have values outside \[0, 1\]",
        ),
        (
            {"target_probabilities": np.array([1.0, np.nan, np.nan, 0.2, 0.6, 1.0])},
            r"target_probabilities: 2 of 3 rows have no target probability for some logged",
        ),
        (
            {"target_probabilities": np.array([0.5, 0.4, 0.2, 0.2, 0.6, 1.0])},
            r"target_probabilities: 1 of 3 rows do not sum to 1",
        ),
        ({"chosen_index": np.array([0, 3, 1])}, r"chosen_index: 2 of 3 rows point outside"),
        ({"offsets": np.array([0, 2, 2, 6])}, r"offsets: 1 of 3 rows have no candidates"),
        ({"offsets": np.array([0])}, r"offsets: the log is empty"),
        ({"reward": np.array([1.0, 0.0])}, r"reward: has 2 rows, expected 3"),
    ],
)
def test_bad_input_raises_value_error_naming_field_and_rows(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LoggedBandit(**{**valid_fields(), **change})


def test_unscored_candidates_are_allowed_but_the_chosen_one_must_be_known() -> None:
    fields = valid_fields()
    LoggedBandit(
        **{**fields, "logging_probabilities": np.array([0.5, np.nan, 0.3, np.nan, 0.2, 1.0])}
    )
    with pytest.raises(ValueError, match="logging_probabilities: 1 of 3 rows disagree"):
        LoggedBandit(
            **{**fields, "logging_probabilities": np.array([np.nan, 0.5, 0.3, 0.5, 0.2, 1.0])}
        )


def test_arrays_are_frozen() -> None:
    data = LoggedBandit(**valid_fields())
    with pytest.raises(ValueError, match="read-only"):
        data.reward[0] = 5.0


def test_with_target_validates_only_the_new_target_and_leaves_the_original() -> None:
    data = LoggedBandit(**valid_fields())
    uniform = np.repeat(1.0 / data.sizes, data.sizes)
    replayed = data.with_target(uniform)
    np.testing.assert_allclose(replayed.importance_weights, [1.0, 1 / 0.6, 1.0])
    np.testing.assert_allclose(data.importance_weights, [2.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="target_probabilities: 1 of 3 rows do not sum to 1"):
        data.with_target(np.array([0.5, 0.4, 0.2, 0.2, 0.6, 1.0]))


def test_estimators_refuse_a_log_without_target() -> None:
    fields = valid_fields()
    fields["target_probabilities"] = None
    with pytest.raises(ValueError, match="target_probabilities: the dataset has no target"):
        _ = LoggedBandit(**fields).importance_weights


def test_take_keeps_each_rows_candidates_and_context(rng: np.random.Generator) -> None:
    data = random_log(rng, 200)
    rows = np.array([5, 3, 199, 0])
    subset = data.take(rows)
    assert subset.n == 4
    for position, row in enumerate(rows):
        lo, hi = data.offsets[row], data.offsets[row + 1]
        slo, shi = subset.offsets[position], subset.offsets[position + 1]
        np.testing.assert_array_equal(subset.action_ids[slo:shi], data.action_ids[lo:hi])
        np.testing.assert_array_equal(
            subset.target_probabilities[slo:shi], data.target_probabilities[lo:hi]
        )
    np.testing.assert_array_equal(subset.importance_weights, data.importance_weights[rows])
    assert subset.context["decision_id"].tolist() == [f"dec-{r}" for r in rows]
