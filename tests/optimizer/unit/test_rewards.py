"""Closing a reward under the frame's terms: a pure function, checked as properties."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.core.catalog import AttributionSpec, HarmSpec
from optimizer.core.values import DecisionReason, RewardDefinition
from optimizer.ports.rewards import DueReward, RewardTerms
from optimizer.rewards import closing, reward_value

costs = st.floats(min_value=0.0, max_value=50.0)
harms = st.builds(HarmSpec, unsubscribe=costs, complaint=costs, contact=costs)


@st.composite
def due_rewards(draw: st.DrawFn) -> tuple[DueReward, AttributionSpec, float]:
    attribution = AttributionSpec(
        reward=draw(st.sampled_from(RewardDefinition)),
        max_value=draw(st.floats(min_value=1.0, max_value=500.0)),
        harm=draw(harms),
    )
    max_offer_cost = draw(st.floats(min_value=0.0, max_value=20.0))
    reward = DueReward(
        decision_id=uuid.uuid4(),
        conversions=draw(st.integers(min_value=0, max_value=3)),
        conversion_value=draw(st.floats(min_value=0.0, max_value=1000.0)),
        direct_value=None,
        sent=True,
        failed=False,
        reason=draw(st.sampled_from([DecisionReason.policy, DecisionReason.policy_no_contact])),
        offer_cost=draw(st.floats(min_value=0.0, max_value=max_offer_cost)),
        terms=RewardTerms(
            attribution.reward.value,
            attribution.reward_range(max_offer_cost),
            attribution.harm,
        ),
        unsubscribed=draw(st.booleans()),
        complained=draw(st.booleans()),
    )
    return reward, attribution, max_offer_cost


@given(due_rewards())
def test_a_final_reward_stays_in_the_frames_range_whatever_the_harm(
    case: tuple[DueReward, AttributionSpec, float],
) -> None:
    reward, attribution, max_offer_cost = case
    low, high = attribution.reward_range(max_offer_cost)
    value = closing(reward).value
    assert value is not None
    assert low <= value <= high


@given(due_rewards())
def test_harm_lowers_a_contacts_reward_by_exactly_its_costs_and_spares_no_contact(
    case: tuple[DueReward, AttributionSpec, float],
) -> None:
    reward, attribution, max_offer_cost = case
    low, high = attribution.reward_range(max_offer_cost)
    harmed = closing(reward).value
    raw = reward_value(
        reward,
        definition=attribution.reward.value,
        offer_cost=reward.offer_cost,
        reward_range=(-math.inf, math.inf),
    )
    contacted = reward.reason == DecisionReason.policy
    harm = attribution.harm.of(
        contacted=contacted, unsubscribed=reward.unsubscribed, complained=reward.complained
    )
    if not contacted:
        assert harm == 0.0
    assert harmed == pytest.approx(min(max(raw - harm, low), high), abs=1e-9)


def test_a_direct_reward_replaces_conversions_and_harm_alike() -> None:
    harm = HarmSpec(unsubscribe=2.0, contact=0.5)
    reward = DueReward(
        decision_id=uuid.uuid4(),
        conversions=1,
        conversion_value=0.0,
        direct_value=0.25,
        sent=True,
        failed=False,
        reason=DecisionReason.policy,
        offer_cost=0.0,
        terms=RewardTerms("binary", (-2.5, 1.0), harm),
        unsubscribed=True,
    )
    assert closing(reward).value == 0.25
