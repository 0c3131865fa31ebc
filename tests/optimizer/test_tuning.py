"""The self-tuning policy: candidates race on every reward, the race survives bytes, and a
clearly better regression model takes over serving."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pydantic import ValidationError

from optimizer.core.policy_spec import Candidate, PolicySpec, TuningSpec
from optimizer.features import NO_CONTACT_LINE
from optimizer.policy import BanditPolicy
from optimizer.tuning import TunedModel
from optimizer.vw import CBModel, VWError

ACTIONS = [f"|o offer_{i}" for i in range(4)]


def stream(policy: BanditPolicy, rounds: int, seed: int = 1) -> None:
    """Customers of two classes; offer i converts at 0.1 + 0.15 * i for class A and the
    reverse for class B, so only a model that learns the interaction does well."""
    rng = np.random.default_rng(seed)
    for t in range(rounds):
        klass = "A" if rng.random() < 0.5 else "B"
        shared = f"shared |c hc_{klass}"
        choice = policy.choose(
            shared, ACTIONS, decision_id=uuid.UUID(int=seed * 10**9 + t), floor_share=0.05
        )
        i = choice.index if klass == "A" else 3 - choice.index
        reward = float(rng.random() < 0.1 + 0.15 * i)
        policy.learn(
            shared, ACTIONS, chosen=choice.index, reward=reward, probability=choice.probability
        )


def test_predict_then_learn_returns_what_predict_said_before_the_update() -> None:
    a = CBModel(PolicySpec().score_args())
    b = CBModel(PolicySpec().score_args())
    rng = np.random.default_rng(0)
    for _ in range(200):
        shared = f"shared |c hc_{'AB'[int(rng.integers(2))]}"
        chosen, cost = int(rng.integers(4)), -float(rng.random() < 0.3)
        before = a.predict(shared, ACTIONS)
        a.learn(shared, ACTIONS, chosen=chosen, cost=cost, probability=1.0)
        got = b.predict_then_learn(shared, ACTIONS, chosen=chosen, cost=cost, probability=1.0)
        assert np.array_equal(before, got)


def test_every_candidate_learns_and_a_clearly_better_one_serves() -> None:
    spec = PolicySpec(
        learning_rate=0.001, tuning=TuningSpec(candidates=(Candidate(learning_rate=0.5),))
    )
    policy = BanditPolicy(spec, name="race")
    stream(policy, 1500)
    report = policy.tuning_report()
    assert report is not None
    assert report["rewards"] == 1500
    assert report["leader_label"] == "lr=0.5"
    losses = [c["square_loss"] for c in report["candidates"]]
    assert losses[1] < losses[0]
    assert all(0.0 <= loss <= 1.5 for loss in losses)


def test_the_race_survives_its_bytes_exactly() -> None:
    policy = BanditPolicy(PolicySpec(), name="race")
    stream(policy, 400)
    again = BanditPolicy(
        PolicySpec(), name="race", model_data=policy.serialize(), examples_learned=400
    )
    assert again.tuning_report() == policy.tuning_report()
    shared = "shared |c hc_A"
    assert np.array_equal(
        again.model.predict(shared, ACTIONS), policy.model.predict(shared, ACTIONS)
    )
    stream(policy, 100, seed=2)
    stream(again, 100, seed=2)
    assert again.tuning_report() == policy.tuning_report()
    assert np.array_equal(
        again.model.predict(shared, ACTIONS), policy.model.predict(shared, ACTIONS)
    )


def test_a_tuned_model_refuses_a_spec_it_was_not_trained_for() -> None:
    policy = BanditPolicy(PolicySpec(), name="race")
    stream(policy, 20)
    data = policy.serialize()
    other = PolicySpec(tuning=TuningSpec(candidates=(Candidate(learning_rate=3.0),)))
    with pytest.raises(VWError, match="candidates differ"):
        TunedModel(other, model_data=data)
    with pytest.raises(VWError, match="no tuning"):
        BanditPolicy(PolicySpec(tuning=None), name="race", model_data=data)
    untuned = BanditPolicy(PolicySpec(tuning=None), name="race").serialize()
    with pytest.raises(VWError, match="not a tuned model"):
        TunedModel(PolicySpec(), model_data=untuned)


def test_specs_name_their_candidates_and_refuse_duplicates() -> None:
    spec = PolicySpec(
        tuning=TuningSpec(
            candidates=(Candidate(learning_rate=0.1), Candidate(add_interactions=("cco",)))
        )
    )
    specs = spec.candidate_specs()
    assert [s.learning_rate for s in specs] == [spec.learning_rate, 0.1, spec.learning_rate]
    assert specs[2].interactions == (*spec.interactions, "cco")
    assert all(s.tuning is None for s in specs)
    with pytest.raises(ValidationError, match="same model as the policy itself"):
        PolicySpec(learning_rate=0.1, tuning=TuningSpec(candidates=(Candidate(learning_rate=0.1),)))
    with pytest.raises(ValidationError, match="namespace letters"):
        PolicySpec(tuning=TuningSpec(candidates=(Candidate(add_interactions=("cq",)),)))
    with pytest.raises(ValidationError, match="SquareCB"):
        PolicySpec(algorithm="bagging", tuning=TuningSpec())
    assert PolicySpec(algorithm="bagging").tuning is None
    assert PolicySpec.model_validate_json(spec.model_dump_json()) == spec


def test_a_single_candidate_serves_exactly_what_vw_squarecb_would() -> None:
    """Contacts learn unweighted, no contact with its weight: VW 9.9's --squarecb learns the
    same way when no contact is the last candidate, so the distributions agree."""
    spec = PolicySpec(tuning=TuningSpec(candidates=(Candidate(learning_rate=0.1),), z=10.0))
    tuned = TunedModel(spec)
    vw = CBModel(spec.candidate_specs()[0].vw_args())
    actions = [*ACTIONS, NO_CONTACT_LINE]
    rng = np.random.default_rng(4)
    for _ in range(400):
        shared = f"shared |c hc_{'AB'[int(rng.integers(2))]} u:{rng.random():.3f}"
        pmf = vw.predict(shared, actions)
        assert np.allclose(tuned.predict(shared, actions), pmf, atol=1e-6)
        logging = 0.5 * pmf + 0.5 / len(actions)
        logging /= logging.sum()
        chosen = int(rng.choice(len(actions), p=logging))
        cost = -float(rng.random() < 0.2 + 0.1 * chosen)
        p = float(logging[chosen])
        tuned.learn(shared, actions, chosen=chosen, cost=cost, probability=p)
        vw.learn(shared, actions, chosen=chosen, cost=cost, probability=p)
    assert tuned.leader == 0
