"""The frame's offer-cost limit per decision holds while serving, not only at the gate."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.catalog import load_catalog, read_snapshot
from campaign_db.engine import session_scope
from campaign_db.models import DecisionLog
from optimizer.core.catalog import CatalogSnapshot, CatalogSpec, split_signature
from optimizer.cost_limit import cap_expected_cost, expected_cost
from tests.optimizer.helpers import serve_churn_decisions

weights = arrays(np.float64, st.integers(1, 12), elements=st.floats(0.0, 1.0)).filter(
    lambda w: w.sum() > 1e-3
)


@st.composite
def pmf_and_costs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:  # type: ignore[type-arg]
    w = draw(weights)
    costs = draw(arrays(np.float64, len(w), elements=st.floats(0.0, 20.0)))
    limit = draw(st.floats(0.0, 25.0))
    return w / w.sum(), costs, limit


@given(case=pmf_and_costs())
def test_capped_distribution_sums_to_one_and_keeps_the_limit_when_it_can(
    case: tuple[np.ndarray, np.ndarray, float],  # type: ignore[type-arg]
) -> None:
    pmf, costs, limit = case
    capped = cap_expected_cost(pmf, costs, limit)
    assert np.all(capped >= 0.0)
    assert abs(capped.sum() - 1.0) < 1e-9
    if costs.min() <= limit:
        assert expected_cost(capped, costs) <= limit + 1e-9
    else:  # nothing fits: the least expected cost there is
        assert abs(expected_cost(capped, costs) - costs.min()) < 1e-9


@given(case=pmf_and_costs())
def test_distribution_within_the_limit_is_left_as_it_is(
    case: tuple[np.ndarray, np.ndarray, float],  # type: ignore[type-arg]
) -> None:
    pmf, costs, _ = case
    limit = expected_cost(pmf, costs)
    assert np.array_equal(cap_expected_cost(pmf, costs, limit), pmf)
    assert np.array_equal(cap_expected_cost(pmf, costs, limit + 1.0), pmf)


@given(case=pmf_and_costs())
def test_capping_only_moves_mass_towards_the_cheapest_candidates(
    case: tuple[np.ndarray, np.ndarray, float],  # type: ignore[type-arg]
) -> None:
    """Every candidate keeps the same share (1 - m) of its mass; only the cheapest gain, and by
    no more than the limit needs."""
    pmf, costs, limit = case
    capped = cap_expected_cost(pmf, costs, limit)
    dearer = costs > costs.min()
    if dearer.any() and pmf[dearer].sum() > 1e-9:
        ratios = capped[dearer & (pmf > 1e-9)] / pmf[dearer & (pmf > 1e-9)]
        assert np.ptp(ratios) < 1e-6
        assert np.all(ratios <= 1.0 + 1e-9)
    if costs.min() < limit and expected_cost(pmf, costs) > limit:
        assert abs(expected_cost(capped, costs) - limit) < 1e-9 * max(1.0, limit)


@pytest.mark.parametrize("costs", [np.array([1.0]), np.array([-1.0, 2.0]), np.array([np.nan, 1.0])])
def test_bad_costs_are_refused_by_name(costs: np.ndarray) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="costs"):
        cap_expected_cost(np.array([0.5, 0.5]), costs, 1.0)


def _tight_catalog(example: CatalogSpec, limit: float) -> CatalogSpec:
    """The example catalog with churn prevention's cost limit per decision lowered."""
    frames = [
        f.model_copy(
            update={
                "guardrails": f.guardrails.model_copy(update={"max_offer_cost_per_decision": limit})
            }
        )
        if f.key == "churn_prevention"
        else f
        for f in example.frames
    ]
    return example.model_copy(update={"frames": frames})


def test_served_decisions_keep_the_frames_expected_offer_cost(
    engine: Engine, example_catalog: CatalogSpec
) -> None:
    """Class D customers are offered a free month (11.99) and a discount (10.79) next to free
    offers; with a limit of 2.00 per decision, every logged distribution's expected offer cost
    stays within it, and each logged probability is the one the distribution gave."""
    limit = 2.0
    with session_scope(engine, write=True) as session:
        load_catalog(
            session, catalog=_tight_catalog(example_catalog, limit), source="test", actor="test"
        )
    serve_churn_decisions(engine, customers_n=12, start=datetime(2026, 11, 24, 7, tzinfo=UTC))
    with session_scope(engine) as session:
        snapshot = read_snapshot(session)
        rows = session.exec(select(DecisionLog).where(DecisionLog.reason == "policy")).all()
    cost_of = {a: offer_costs_of(snapshot, a) for a in snapshot.actions.values()}
    assert rows, "no policy decision was made"
    for row in rows:
        assert row.probabilities is not None
        assert row.candidate_action_ids is not None
        costs = np.array([cost_of[int(a)] for a in row.candidate_action_ids])
        assert costs.max() > limit  # the frame offers more than the limit allows on average
        assert expected_cost(np.asarray(row.probabilities), costs) <= limit + 1e-9
        chosen = list(row.candidate_action_ids).index(row.chosen_action_id)
        assert row.probability == row.probabilities[chosen]


def offer_costs_of(snapshot: CatalogSnapshot, action_id: int) -> float:
    signatures = {a: s for s, a in snapshot.actions.items()}
    offer = split_signature(signatures[action_id])[0]
    return snapshot.offers[offer].cost if offer in snapshot.offers else 0.0
