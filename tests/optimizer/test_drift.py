"""Drift: the CUSUM on the leader's residual, and what a tuned model does when it fires."""

from __future__ import annotations

import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.drift import DriftMonitor, DriftSettings
from optimizer.core.policy_spec import ExplorationSpec, PolicySpec, TuningSpec
from optimizer.policy import BanditPolicy

ACTIONS = [f"|o offer_{i}" for i in range(4)]
BOUNDS = ExplorationSpec(min_probability_share=0.05, max_epsilon=0.3)
FAST = DriftSettings(warm_up=200, recovery_rewards=100)


def feed(monitor: DriftMonitor, residuals: np.ndarray) -> list[tuple[int, str]]:
    events = []
    for i, r in enumerate(residuals):
        event = monitor.add(float(r))
        if event is not None:
            events.append((i, event))
    return events


def test_stationary_residuals_raise_no_alarm_in_200000_rewards() -> None:
    rng = np.random.default_rng(20261207)
    monitor = DriftMonitor()
    assert feed(monitor, rng.normal(0.0, 0.4, 200_000)) == []
    bernoulli = rng.random(200_000) < 0.15
    assert feed(DriftMonitor(), bernoulli - 0.15) == []


@settings(max_examples=25, deadline=None)
@given(
    shift=st.floats(min_value=0.6, max_value=1.5),
    sign=st.sampled_from([-1.0, 1.0]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_shifted_mean_is_found_about_when_the_cusum_says_and_then_caught_up_with(
    shift: float, sign: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    monitor = DriftMonitor(settings=FAST)
    assert feed(monitor, rng.normal(0.0, 1.0, 3_000)) == []
    bound = FAST.threshold / (shift - FAST.slack)
    events = feed(monitor, rng.normal(sign * shift, 1.0, int(3 * bound)))
    assert events, "the shift went unnoticed"
    assert events[0][1] == "alarm"
    assert monitor.drifting
    assert monitor.alarms == 1
    caught_up = feed(monitor, rng.normal(0.0, 1.0, 3_000))
    assert [kind for _, kind in events[1:] + caught_up] == ["recovered"]
    assert not monitor.drifting


def test_the_monitor_survives_its_dictionary_exactly() -> None:
    rng = np.random.default_rng(3)
    a = DriftMonitor(settings=FAST)
    feed(a, rng.normal(0.0, 1.0, 500))
    feed(a, rng.normal(1.0, 1.0, 100))
    b = DriftMonitor.from_dict(a.to_dict())
    assert b == a
    tail = rng.normal(0.0, 1.0, 1_000)
    assert feed(a, tail) == feed(b, tail)


def stream(policy: BanditPolicy, rounds: int, *, seed: int, flipped: bool = False) -> list[float]:
    """Offer i converts at 0.1 + 0.25 i for class A, the reverse for B; `flipped` swaps the
    classes. Returns the probability the policy gave the best offer each round."""
    rng = np.random.default_rng(seed)
    best = []
    for t in range(rounds):
        klass = "A" if rng.random() < 0.5 else "B"
        shared = f"shared |c hc_{klass}"
        choice = policy.choose(
            shared,
            ACTIONS,
            decision_id=uuid.UUID(int=seed * 10**9 + t),
            floor_share=policy.floor_share(BOUNDS),
        )
        top = 3 if (klass == "A") != flipped else 0
        best.append(float(choice.distribution[top]))
        i = choice.index if (klass == "A") != flipped else 3 - choice.index
        reward = float(rng.random() < 0.1 + 0.25 * i)
        policy.learn(
            shared, ACTIONS, chosen=choice.index, reward=reward, probability=choice.probability
        )
    return best


def drift_report(policy: BanditPolicy) -> dict[str, object]:
    report = policy.tuning_report()
    assert report is not None
    drift = report["drift"]
    assert isinstance(drift, dict)
    return drift


def test_a_tuned_policy_finds_the_flip_explores_more_until_it_caught_up_and_gains_by_it() -> None:
    watching = BanditPolicy(PolicySpec(), name="flip")
    blind = BanditPolicy(PolicySpec(tuning=TuningSpec(detect_drift=False)), name="flip")
    for policy in (watching, blind):
        stream(policy, 3_000, seed=1)
        assert drift_report(policy)["alarms"] == 0
        assert policy.floor_share(BOUNDS) == 0.05

    stream(watching, 300, seed=2, flipped=True)
    assert drift_report(watching)["alarms"] == 1
    assert watching.drifting
    assert watching.floor_share(BOUNDS) == BOUNDS.max_epsilon
    report = watching.tuning_report()
    assert report is not None
    assert report["rewards"] < 300, "validation did not start again at the alarm"
    restored = BanditPolicy(
        PolicySpec(), name="flip", model_data=watching.serialize(), examples_learned=3_300
    )
    assert restored.tuning_report() == watching.tuning_report()
    assert restored.drifting

    late = stream(watching, 4_000, seed=3, flipped=True)
    assert not watching.drifting
    assert watching.floor_share(BOUNDS) == 0.05

    stream(blind, 300, seed=2, flipped=True)
    assert drift_report(blind)["alarms"] == 0
    assert not blind.drifting
    late_blind = stream(blind, 4_000, seed=3, flipped=True)
    assert np.mean(late) > 1.3 * np.mean(late_blind)
