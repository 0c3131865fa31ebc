"""Pacing in the decision plan: the price lowers what spends an ahead-of-plan budget, and the
logged prices recompute the logged distribution exactly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pytest

from optimizer.budgets import frame_periods, price_penalties
from optimizer.core.catalog import (
    BudgetSpec,
    CatalogSnapshot,
    CatalogSpec,
    FrameVersion,
    split_signature,
)
from optimizer.core.decision import CustomerProfile, CustomerRecord, DecisionAsk
from optimizer.core.policy_spec import PolicySpec
from optimizer.eligibility import frame_combinations, in_holdout
from optimizer.features import ActionLines, shared_line
from optimizer.planning import DecisionPlan, PlanIds, plan_decision
from optimizer.policy import BanditPolicy
from optimizer.ports.decisions import BudgetPeriod
from tests.optimizer.test_eligibility import snapshot_of

NOW = datetime(2026, 11, 25, 9, 15, tzinfo=UTC)  # Wednesday: 30 % of the week has passed
FRAME = "churn_prevention"
CHANNELS = ("email", "sms", "app_push", "letter")


@dataclass(frozen=True)
class World:
    snapshot: CatalogSnapshot
    frame: FrameVersion
    lines: ActionLines
    policy: BanditPolicy


@pytest.fixture(scope="module")
def world(example_catalog: CatalogSpec) -> World:
    budget = BudgetSpec(key="free_months", limit=1000, period="week", offer="free_month")
    frames = [
        f.model_copy(update={"budgets": [budget]}) if f.key == FRAME else f
        for f in example_catalog.frames
    ]
    snapshot = snapshot_of(example_catalog.model_copy(update={"frames": frames}))
    frame = next(f for f in snapshot.frames if f.key == FRAME)
    lines = ActionLines(snapshot)
    combos = frame_combinations(snapshot, frame, "en", "D")
    policy = BanditPolicy(PolicySpec(name=FRAME), name=FRAME, version="1")
    rng = np.random.default_rng(5)
    actions = [c.line for c in combos]
    shared = "shared |c hc_D"
    for _ in range(400):  # free months convert best
        chosen = int(rng.integers(len(actions)))
        reward = 1.0 if combos[chosen].offer == "free_month" and rng.random() < 0.6 else 0.0
        policy.learn(shared, actions, chosen=chosen, reward=reward, probability=1 / len(actions))
    return World(snapshot, frame, lines, policy)


def _plan(world: World, spent: float) -> DecisionPlan:
    snapshot, policy = world.snapshot, world.policy
    customer_id = next(
        f"p{i}" for i in range(100) if not in_holdout(f"p{i}", salt=FRAME, share=0.05)
    )
    state = CustomerRecord(
        profile=CustomerProfile(
            id=customer_id,
            health_class="D",
            usage_index=0.2,
            customer_since=None,
            time_zone="Europe/Berlin",
            language="en",
            attributes={},
        ),
        consents=frozenset(CHANNELS),
        history=(),
    )
    period = BudgetPeriod(FRAME, "free_months", date(2026, 11, 23))
    return plan_decision(
        DecisionAsk(
            request_id="r",
            customer_id=customer_id,
            trigger="health_c_to_d",
            channels=CHANNELS,
            now=NOW,
        ),
        now=NOW,
        state=state,
        snapshot=snapshot,
        policy_for=lambda _frame: policy,
        combinations=lambda f, lang, hc: frame_combinations(snapshot, f, lang, hc),
        ids=PlanIds(decision=uuid.UUID(int=7), contact=uuid.UUID(int=8)),
        budgets={period: spent},
    )


def _free_month_mass(world: World, plan: DecisionPlan) -> float:
    snapshot = world.snapshot
    entry = plan.write.entry
    names = {i: s for s, i in snapshot.actions.items()}
    assert entry.probabilities is not None
    assert entry.candidate_action_ids is not None
    return float(
        sum(
            p
            for a, p in zip(entry.candidate_action_ids, entry.probabilities, strict=True)
            if split_signature(names[a])[0] == "free_month"
        )
    )


def test_spend_ahead_of_plan_moves_mass_off_the_budgeted_offer(
    world: World,
) -> None:
    behind, ahead = _plan(world, spent=100.0), _plan(world, spent=500.0)
    assert behind.write.entry.budget_prices == {"free_months": 0.0}
    assert ahead.write.entry.budget_prices is not None
    assert ahead.write.entry.budget_prices["free_months"] > 0
    assert _free_month_mass(world, ahead) < _free_month_mass(world, behind)


def test_the_logged_prices_recompute_the_logged_distribution(
    world: World,
) -> None:
    snapshot, frame, lines, policy = world.snapshot, world.frame, world.lines, world.policy
    entry = _plan(world, spent=500.0).write.entry
    assert entry.candidate_action_ids is not None
    assert entry.probabilities is not None
    assert entry.budget_prices is not None
    names = {i: s for s, i in snapshot.actions.items()}
    pairs: list[tuple[str, str] | None] = []
    for action_id in entry.candidate_action_ids:
        offer, _, channel, _ = split_signature(names[action_id])
        pairs.append(None if offer is None or channel is None else (offer, channel))
    prices = {
        period: entry.budget_prices[period.budget_key]
        for _, period in frame_periods(frame, entry.created_at)
    }
    low, high = frame.spec.attribution.reward_range(frame.spec.max_offer_cost)
    penalties = price_penalties(
        frame,
        entry.created_at,
        pairs,
        snapshot.offers,
        prices,
        reward_span=high - low,
    )
    again = policy.distribution(
        shared_line(entry.context),
        [lines[a] for a in entry.candidate_action_ids],
        floor_share=policy.spec.floor_share(frame.spec.exploration),
        # the frame's offer-cost cap applies after the price, as it did when deciding
        costs=np.array([0.0 if p is None else snapshot.offers[p[0]].cost for p in pairs]),
        max_expected_cost=frame.spec.guardrails.max_offer_cost_per_decision,
        penalties=penalties,
    )
    np.testing.assert_allclose(again, entry.probabilities, rtol=0, atol=1e-12)
