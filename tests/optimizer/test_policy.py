"""The policy: distributions, the floor, reproducible sampling, VW learning and serialisation."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from optimizer.core.policy_spec import ExplorationSpec, PolicySpec
from optimizer.policy import (
    BanditPolicy,
    mix_with_uniform,
    reward_to_cost,
    sample_index,
    seed_from_id,
)
from optimizer.vw import CBModel, VWError

ACTIONS = [f"|o offer_{i % 5} |n ch_{i % 3} |s slot_{i % 4} |x text_{i}" for i in range(40)]


def shared(hc: str) -> str:
    return f"shared |c hc_{hc} usage:0.3 |t churn |h h17 wd2 we0"


def trained_policy(
    spec: PolicySpec | None = None, rounds: int = 1500, seed: int = 0
) -> BanditPolicy:
    """A policy that learned: offer_(class index) on ch_1 converts, everything else does not."""
    policy = BanditPolicy(spec or PolicySpec(), name="test")
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        hc = "ABCD"[int(rng.integers(4))]
        chosen = int(rng.integers(len(ACTIONS)))
        good = chosen % 5 == "ABCD".index(hc) and chosen % 3 == 1
        policy.learn(
            shared(hc),
            ACTIONS,
            chosen=chosen,
            reward=1.0 if good else 0.0,
            probability=1 / len(ACTIONS),
        )
    return policy


def test_reward_becomes_negative_cost() -> None:
    assert reward_to_cost(1.0) == -1.0
    assert reward_to_cost(0.0) == 0.0
    assert reward_to_cost(-2.5) == 2.5


@given(
    pmf=arrays(np.float64, st.integers(1, 300), elements=st.floats(0, 1)),
    share=st.floats(0.0, 0.99),
)
@settings(max_examples=200, deadline=None)
def test_mixed_distribution_sums_to_one_and_respects_the_floor(
    pmf: np.ndarray, share: float
) -> None:
    mixed = mix_with_uniform(pmf, share)
    assert mixed.sum() == pytest.approx(1.0, abs=1e-12)
    assert mixed.min() >= share / len(pmf) * (1 - 1e-9)


def test_untrained_policy_is_uniform() -> None:
    policy = BanditPolicy(PolicySpec(), name="fresh")
    dist = policy.distribution(shared("A"), ACTIONS, floor_share=0.05)
    assert np.allclose(dist, 1 / len(ACTIONS))


def test_the_same_decision_id_reproduces_the_same_choice() -> None:
    policy = trained_policy()
    decision_id = uuid.uuid4()
    first = policy.choose(shared("B"), ACTIONS, decision_id=decision_id, floor_share=0.05)
    again = policy.choose(shared("B"), ACTIONS, decision_id=decision_id, floor_share=0.05)
    assert first.index == again.index
    assert first.seed == seed_from_id(decision_id)
    assert first.probability == first.distribution[first.index]
    assert sample_index(first.distribution, first.seed) == first.index


def test_sampling_follows_the_distribution() -> None:
    distribution = np.array([0.7, 0.2, 0.1])
    picks = np.bincount([sample_index(distribution, seed) for seed in range(20_000)], minlength=3)
    assert np.allclose(picks / 20_000, distribution, atol=0.015)


@pytest.mark.parametrize("algorithm", ["epsilon_greedy", "squarecb", "bagging", "cover"])
def test_each_algorithm_learns_the_best_action_and_keeps_the_floor(algorithm: str) -> None:
    policy = trained_policy(PolicySpec(algorithm=algorithm, epsilon=0.1), rounds=2000)  # type: ignore[arg-type]
    dist = policy.distribution(shared("C"), ACTIONS, floor_share=0.05)
    best = {i for i in range(len(ACTIONS)) if i % 5 == 2 and i % 3 == 1}
    assert dist.sum() == pytest.approx(1.0)
    assert dist.min() >= 0.05 / len(ACTIONS) - 1e-12
    assert dist[sorted(best)].sum() > 3 * len(best) / len(ACTIONS)


def test_serialize_then_load_keeps_predictions() -> None:
    policy = trained_policy()
    loaded = BanditPolicy(
        policy.spec, name="test", model_data=policy.serialize(), examples_learned=1
    )
    for hc in "ABCD":
        assert np.array_equal(
            policy.distribution(shared(hc), ACTIONS, floor_share=0.05),
            loaded.distribution(shared(hc), ACTIONS, floor_share=0.05),
        )


def test_cached_action_examples_learn_exactly_like_freshly_parsed_ones() -> None:
    args = PolicySpec().vw_args()
    cached, fresh = CBModel(args), CBModel(args)
    rng = np.random.default_rng(1)
    for _ in range(300):
        chosen = int(rng.integers(len(ACTIONS)))
        cost = -float(rng.random() < 0.3)
        cached.learn(shared("A"), ACTIONS, chosen=chosen, cost=cost, probability=0.5)
        fresh._actions.clear()
        fresh.learn(shared("A"), ACTIONS, chosen=chosen, cost=cost, probability=0.5)
    assert cached.serialize() == fresh.serialize()


def test_vw_refuses_bad_probability_and_bad_model_bytes() -> None:
    model = CBModel(PolicySpec().vw_args())
    with pytest.raises(VWError):
        model.learn(shared("A"), ACTIONS, chosen=0, cost=-1.0, probability=0.0)
    with pytest.raises(VWError):
        CBModel(model_data=b"not a model")


def test_spec_renders_vw_arguments_and_checks_frame_bounds() -> None:
    spec = PolicySpec(algorithm="epsilon_greedy", epsilon=0.4, interactions=("co", "cns"))
    args = spec.vw_args()
    assert args[:1] == ["--cb_explore_adf"]
    assert args[args.index("--epsilon") : args.index("--epsilon") + 2] == ["--epsilon", "0.4"]
    assert "--cubic" in args
    assert "cns" in args
    problems = spec.frame_violations(ExplorationSpec(max_epsilon=0.2, algorithms=["squarecb"]))
    assert len(problems) == 2
    assert spec.floor_share(ExplorationSpec(min_probability_share=0.1)) == 0.1


def test_spec_refuses_unknown_namespaces() -> None:
    with pytest.raises(ValidationError, match="interaction 'cq'"):
        PolicySpec(interactions=("cq",))
