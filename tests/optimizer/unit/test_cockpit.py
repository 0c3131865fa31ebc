"""The cockpit's arithmetic: the uplift's interval and what a draft frame changes."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.cockpit import frame_changes, uplift, wilson
from optimizer.core.catalog import CatalogSpec


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(0, 5, 0, 3), (5, 5, 0, 7), (40, 200, 1, 9)])
def test_uplift_interval_holds_the_difference_and_stays_between_minus_one_and_one(
    x1: int, n1: int, x0: int, n0: int
) -> None:
    found = uplift(x1, n1, x0, n0)
    assert found.difference == x1 / n1 - x0 / n0
    assert found.low is not None
    assert found.high is not None
    assert -1.0 <= found.low <= found.difference <= found.high <= 1.0


def test_uplift_is_unknown_without_a_holdout_or_without_contacts() -> None:
    assert uplift(3, 10, 0, 0).difference is None
    assert uplift(0, 0, 1, 10).low is None
    assert uplift(3, 10, 0, 0).contact_rate == 0.3


def test_uplift_interval_narrows_with_more_decisions() -> None:
    small, large = uplift(30, 100, 10, 100), uplift(300, 1000, 100, 1000)
    assert large.high - large.low < small.high - small.low  # type: ignore[operator]


def test_uplift_interval_covers_the_true_difference_near_its_nominal_rate(
    rng: np.random.Generator,
) -> None:
    p1, p0, n1, n0 = 0.12, 0.08, 400, 60
    covered = 0
    for x1, x0 in zip(rng.binomial(n1, p1, 2000), rng.binomial(n0, p0, 2000), strict=True):
        found = uplift(int(x1), n1, int(x0), n0)
        covered += found.low <= p1 - p0 <= found.high  # type: ignore[operator]
    assert 0.93 <= covered / 2000 <= 0.975


def test_wilson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson(4, 3)
    with pytest.raises(ValueError, match="n"):
        wilson(0, 0)


def test_frame_changes_name_only_the_fields_that_differ(example_catalog: CatalogSpec) -> None:
    serving = example_catalog.frames[0]
    draft = serving.model_copy(update={"holdout_share": 0.2})

    changes = frame_changes(serving, draft)

    assert [(c.field, c.serving, c.draft) for c in changes] == [
        ("holdout_share", str(serving.holdout_share), "0.2")
    ]
    assert len(frame_changes(None, draft)) > 10
