"""Estimators: properties that hold on any log, interval behaviour and mergeable accumulators."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_eval import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    Estimator,
    LoggedBandit,
    LoggedMean,
    SwitchDR,
    VersusLogging,
    cross_fit,
    estimate_by_group,
)
from offline_eval.report import segment_codes
from offline_eval.synthetic import SyntheticEnvironment, SyntheticSetting
from tests.offline_eval.helpers import random_distributions, random_log

ALL = [IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(threshold=3.0)]
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def predictions_for(data, rng: np.random.Generator) -> np.ndarray:  # type: ignore[no-untyped-def]
    return rng.uniform(0.0, 1.0, size=data.n_candidates)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, n=st.integers(min_value=1, max_value=300))
def test_ips_equals_the_sample_mean_when_target_is_the_logging_policy(seed: int, n: int) -> None:
    data = random_log(np.random.default_rng(seed), n)
    on_policy = data.with_target(data.logging_probabilities)
    assert IPS().estimate(on_policy).value == pytest.approx(float(np.mean(data.reward)), abs=1e-12)
    assert SNIPS().estimate(on_policy).value == pytest.approx(
        float(np.mean(data.reward)), abs=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(seed=seeds, constant=st.floats(min_value=-5, max_value=5), model=st.floats(-3, 3))
def test_constant_reward_is_recovered_by_snips_sndr_and_dr_with_a_right_model(
    seed: int, constant: float, model: float
) -> None:
    """SNIPS gives c for any weights, SNDR for any constant reward model, DR only when the model
    predicts c; unclipped IPS gives c times the mean weight (exact only in expectation)."""
    rng = np.random.default_rng(seed)
    data = random_log(rng, 200, reward=np.full(200, constant))
    wrong = np.full(data.n_candidates, model)
    right = np.full(data.n_candidates, constant)
    assert SNIPS().estimate(data).value == pytest.approx(constant, abs=1e-9)
    assert SNDR().estimate(data, predictions=wrong).value == pytest.approx(constant, abs=1e-9)
    assert DR().estimate(data, predictions=right).value == pytest.approx(constant, abs=1e-9)
    ips = IPS(clip=False).estimate(data).value
    assert ips == pytest.approx(constant * float(np.mean(data.importance_weights)), abs=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds)
def test_snips_stays_in_reward_range_when_propensities_are_tiny(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = random_log(rng, 100, rewards="normal")
    tiny = data.logged_probability * rng.choice([1.0, 1e-6], size=data.n)
    data = LoggedBandit(
        offsets=data.offsets,
        action_ids=data.action_ids,
        chosen_index=data.chosen_index,
        logged_probability=tiny,
        reward=data.reward,
        target_probabilities=data.target_probabilities,
    )
    value = SNIPS().estimate(data).value
    assert data.reward.min() - 1e-9 <= value <= data.reward.max() + 1e-9


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: e.name)
def test_contributions_average_to_the_estimate_and_give_its_standard_error(
    estimator: Estimator, rng: np.random.Generator
) -> None:
    data = random_log(rng, 2000)
    predictions = predictions_for(data, rng)
    estimate = estimator.estimate(data, predictions=predictions)
    contributions = estimator.contributions(data, predictions=predictions)
    assert float(contributions.mean()) == pytest.approx(estimate.value, rel=1e-10)
    std_error = float(contributions.std(ddof=1)) / np.sqrt(data.n)
    assert estimate.std_error == pytest.approx(std_error, rel=1e-8)


def test_snips_interval_is_the_ratio_variance_not_the_naive_one(rng: np.random.Generator) -> None:
    data = random_log(rng, 5000)
    w, r = data.importance_weights, data.reward
    value = float(np.sum(w * r) / np.sum(w))
    delta = np.sqrt(np.sum(w**2 * (r - value) ** 2) / np.sum(w) ** 2 * data.n / (data.n - 1))
    assert SNIPS().estimate(data).std_error == pytest.approx(delta, rel=1e-9)


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: e.name)
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=seeds, cuts=st.lists(st.integers(1, 599), min_size=1, max_size=5, unique=True))
def test_accumulators_merged_over_chunks_equal_the_one_pass_result(
    estimator: Estimator, seed: int, cuts: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    data = random_log(rng, 600)
    predictions = predictions_for(data, rng)
    whole = estimator.estimate(data, predictions=predictions)
    bounds = [0, *sorted(cuts), data.n]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        rows = np.arange(lo, hi)
        chunk = data.take(rows)
        acc = estimator.accumulator()
        acc.add(chunk, predictions=predictions[chunk_positions(data, rows)])
        parts.append(acc)
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(other)
    result = merged.get()
    assert result.n == whole.n
    for name in ("value", "ci_low", "ci_high", "std_error"):
        assert getattr(result, name) == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-12)
    assert result.diagnostics.effective_sample_size == pytest.approx(
        whole.diagnostics.effective_sample_size, rel=1e-9
    )
    assert result.diagnostics.max_importance_weight == whole.diagnostics.max_importance_weight
    assert result.diagnostics.model_rows == whole.diagnostics.model_rows


def chunk_positions(data, rows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.arange(data.offsets[rows[0]], data.offsets[rows[-1] + 1])


def test_accumulator_refuses_the_bootstrap() -> None:
    with pytest.raises(ValueError, match="interval: accumulators support the analytic"):
        IPS(interval="bootstrap").accumulator()


def test_intervals_narrow_as_n_grows() -> None:
    rng = np.random.default_rng(7)
    env = SyntheticEnvironment(SyntheticSetting(n_actions=5, population=5000), rng)
    small = env.sample(1000, rng)
    large = env.sample(16000, rng)
    for estimator in (IPS(), SNIPS(), DR(), SNDR()):
        narrow = estimator.estimate(large.data, predictions=large.expected_reward).width
        wide = estimator.estimate(small.data, predictions=small.expected_reward).width
        assert 2.5 < wide / narrow < 6.0  # about sqrt(16) = 4


def test_analytic_intervals_cover_the_truth_near_the_nominal_rate() -> None:
    """A quick version of the benchmark: 100 logs of 2,000 decisions, 95 % intervals."""
    setting = SyntheticSetting(n_actions=5, population=5000)
    estimators = [IPS(), SNIPS(), DR(), SNDR()]
    covered = np.zeros(len(estimators))
    for seed in range(100):
        rng = np.random.default_rng(seed)
        sample = SyntheticEnvironment(setting, rng).sample(2000, rng)
        predictions = cross_fit(sample.data, features=sample.features, n_folds=2, rng=rng)
        for j, estimator in enumerate(estimators):
            e = estimator.estimate(sample.data, predictions=predictions.predictions)
            covered[j] += e.ci_low <= sample.true_value <= e.ci_high
    assert np.all(covered >= 88), dict(zip([e.name for e in estimators], covered, strict=True))


def test_bootstrap_is_seeded_and_agrees_with_the_analytic_interval(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 3000)
    analytic = SNIPS().estimate(data)
    first = SNIPS(interval="bootstrap", n_bootstrap=400).estimate(data)
    again = SNIPS(interval="bootstrap", n_bootstrap=400).estimate(data)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert first.interval_method.startswith("bootstrap")
    assert first.width == pytest.approx(analytic.width, rel=0.2)
    other = SNIPS(interval="bootstrap", n_bootstrap=400).estimate(
        data, rng=np.random.default_rng(99)
    )
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_support_problems_are_flagged_with_a_count() -> None:
    data = LoggedBandit(
        offsets=np.array([0, 3, 6, 9]),
        action_ids=np.array([1, 2, 3, 1, 2, 3, 1, 2, 3]),
        chosen_index=np.array([0, 0, 1]),
        logged_probability=np.array([0.5, 1.0, 0.5]),
        reward=np.array([1.0, 0.0, 1.0]),
        logging_probabilities=np.array([0.5, 0.5, 0.0, 1.0, np.nan, np.nan, 0.5, 0.5, 0.0]),
        target_probabilities=np.array([0.4, 0.4, 0.2, 0.5, 0.5, 0.0, 0.5, 0.5, 0.0]),
    )
    diagnostics = IPS().estimate(data).diagnostics
    assert diagnostics.zero_probability_rows == 1
    assert diagnostics.unscored_rows == 1
    assert diagnostics.warning is not None
    assert "probability 0 in 1 rows" in diagnostics.warning
    assert "never scored in 1 rows" in diagnostics.warning


def test_diagnostics_report_effective_sample_size_and_largest_weight(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 500)
    w = data.importance_weights
    diagnostics = SNIPS().estimate(data).diagnostics
    assert diagnostics.effective_sample_size == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert diagnostics.max_importance_weight == pytest.approx(w.max())
    assert IPS().estimate(data).diagnostics.zero_probability_rows == 0


def test_switch_dr_spans_dm_and_dr(rng: np.random.Generator) -> None:
    data = random_log(rng, 500)
    predictions = predictions_for(data, rng)
    dm = DM().estimate(data, predictions=predictions).value
    dr = DR().estimate(data, predictions=predictions).value
    assert SwitchDR(threshold=0.0).estimate(data, predictions=predictions).value == pytest.approx(
        dm
    )
    assert SwitchDR(threshold=np.inf).estimate(
        data, predictions=predictions
    ).value == pytest.approx(dr)
    partial = SwitchDR(threshold=1.0).estimate(data, predictions=predictions)
    assert partial.diagnostics.model_rows == int(np.sum(data.importance_weights > 1.0))


def test_model_based_estimators_need_predictions(rng: np.random.Generator) -> None:
    data = random_log(rng, 50)
    with pytest.raises(ValueError, match="reward_predictions: DR needs a reward-model prediction"):
        DR().estimate(data)
    with pytest.raises(ValueError, match="reward_predictions: has 3 values"):
        DR().estimate(data, predictions=np.ones(3))


def test_difference_to_logging_is_zero_when_replaying_the_logging_policy(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 400)
    on_policy = data.with_target(data.logging_probabilities)
    difference = VersusLogging(base=IPS()).estimate(on_policy)
    assert difference.value == pytest.approx(0.0, abs=1e-12)
    assert difference.estimator == "IPS - logging"
    assert LoggedMean().estimate(data).value == pytest.approx(float(data.reward.mean()))


def test_difference_interval_is_paired(rng: np.random.Generator) -> None:
    """Same rounds for both policies: the difference is tighter than either interval alone."""
    data = random_log(rng, 3000)
    close = data.with_target(
        0.9 * data.logging_probabilities + 0.1 * random_distributions(rng, data.sizes)
    )
    difference = VersusLogging(base=SNIPS()).estimate(close)
    assert difference.width < SNIPS().estimate(close).width


def test_estimates_by_group_equal_estimates_on_each_subset(rng: np.random.Generator) -> None:
    data = random_log(rng, 800)
    predictions = predictions_for(data, rng)
    codes, names = segment_codes(data, "health_class")
    for estimator in (SNIPS(), SNDR()):
        grouped = estimate_by_group(
            estimator, data, codes=codes, n_groups=len(names), predictions=predictions
        )
        for g in range(len(names)):
            rows = np.flatnonzero(codes == g)
            subset = data.take(rows)
            flat = np.concatenate([np.arange(data.offsets[r], data.offsets[r + 1]) for r in rows])
            alone = estimator.estimate(subset, predictions=predictions[flat])
            assert grouped[g].value == pytest.approx(alone.value, rel=1e-10)
            assert grouped[g].std_error == pytest.approx(alone.std_error, rel=1e-8)


def test_estimate_serialises_without_nan() -> None:
    one = LoggedBandit(
        offsets=np.array([0, 2]),
        action_ids=np.array([0, 1]),
        chosen_index=np.array([0]),
        logged_probability=np.array([0.5]),
        reward=np.array([1.0]),
        target_probabilities=np.array([0.5, 0.5]),
    )
    payload = IPS().estimate(one).to_dict()
    assert payload["ci_low"] is None
    json.dumps(payload, allow_nan=False)


def _lucky_log(n: int = 40) -> LoggedBandit:
    """Binary rewards where the target always picks the rarely logged action that converted:
    IPS and DR overshoot 1, a conversion rate no policy can beat."""
    offsets = np.arange(0, 2 * n + 1, 2)
    chosen = np.array([0] * 5 + [1] * (n - 5))
    logging = np.tile([0.1, 0.9], n)
    return LoggedBandit(
        offsets=offsets,
        action_ids=np.tile([0, 1], n),
        chosen_index=chosen,
        logged_probability=logging[offsets[:-1] + chosen],
        reward=np.where(chosen == 0, 1.0, 0.0),
        logging_probabilities=logging,
        target_probabilities=np.tile([1.0, 0.0], n),
        reward_range=(0.0, 1.0),
    )


@pytest.mark.parametrize("estimator", [IPS(), DR()], ids=lambda e: e.name)
def test_estimate_above_the_reward_range_is_clipped_and_keeps_its_raw_value(
    estimator: Estimator,
) -> None:
    data = _lucky_log()
    predictions = np.full(data.n_candidates, 0.5)
    unclipped = replace(estimator, clip=False).estimate(data, predictions=predictions)
    assert unclipped.value > 1.0  # the defect: a conversion rate above 1
    estimate = estimator.estimate(data, predictions=predictions)
    assert estimate.value == 1.0
    assert 0.0 <= estimate.ci_low <= estimate.ci_high <= 1.0
    assert estimate.clipped
    assert estimate.raw == (unclipped.value, unclipped.ci_low, unclipped.ci_high)
    assert estimate.value_range == (0.0, 1.0)
    payload = estimate.to_dict()
    assert payload["clipped"] is True
    assert payload["raw_value"] == pytest.approx(unclipped.value)
    assert estimate.clip_note is not None
    assert "clipped" in estimate.clip_note


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: e.name)
@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=st.integers(min_value=2, max_value=60))
def test_every_estimate_and_interval_stays_in_the_reward_range(
    estimator: Estimator, seed: int, n: int
) -> None:
    """However small the log, value and interval lie in the range the rewards can take; an
    estimate that needed no clipping keeps no raw copy."""
    rng = np.random.default_rng(seed)
    data = random_log(rng, n, max_candidates=3, reward_range=(0.0, 1.0))
    predictions = rng.uniform(-0.5, 1.5, size=data.n_candidates)
    estimate = estimator.estimate(data, predictions=predictions)
    for x in (estimate.value, estimate.ci_low, estimate.ci_high):
        assert not np.isfinite(x) or 0.0 <= x <= 1.0
    if estimate.raw is None:
        raw = replace(estimator, clip=False).estimate(data, predictions=predictions)
        assert (raw.value, raw.ci_low, raw.ci_high) == (
            estimate.value,
            estimate.ci_low,
            estimate.ci_high,
        )


def test_difference_to_logging_is_clipped_to_the_width_of_the_reward_range() -> None:
    data = _lucky_log()
    difference = VersusLogging(base=IPS()).estimate(data)
    assert -1.0 <= difference.ci_low <= difference.value <= difference.ci_high <= 1.0
    assert difference.value_range == (-1.0, 1.0)


def test_without_a_given_range_the_observed_rewards_bound_the_estimate() -> None:
    data = _lucky_log().with_reward(_lucky_log().reward, reward_range=None)
    assert data.reward_range is None
    estimate = IPS().estimate(data)
    assert estimate.value_range == (0.0, 1.0)
    assert estimate.value == 1.0


def test_clipped_estimates_by_group_equal_clipped_estimates_on_each_subset(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 120, rewards="normal")
    codes, names = segment_codes(data, "health_class")
    grouped = estimate_by_group(IPS(), data, codes=codes, n_groups=len(names))
    for g in range(len(names)):
        alone = IPS().estimate(data.take(np.flatnonzero(codes == g)))
        assert (grouped[g].value, grouped[g].ci_low, grouped[g].ci_high) == pytest.approx(
            (alone.value, alone.ci_low, alone.ci_high), rel=1e-10
        )
        assert grouped[g].value_range == alone.value_range
