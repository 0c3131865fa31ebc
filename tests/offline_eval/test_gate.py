"""The promotion gate decides from the evidence and says why."""

from __future__ import annotations

from offline_eval.estimators import Diagnostics, Estimate
from offline_eval.gate import GateConfig, Guardrail, promotion_gate


def estimate(value: float, low: float, high: float, ess: float = 5_000.0) -> Estimate:
    return Estimate(
        estimator="SNIPS",
        value=value,
        ci_low=low,
        ci_high=high,
        std_error=(high - low) / 3.92,
        alpha=0.05,
        n=10_000,
        interval_method="analytic",
        diagnostics=Diagnostics(
            effective_sample_size=ess,
            max_importance_weight=3.0,
            zero_probability_rows=0,
            unscored_rows=0,
            model_rows=None,
            warning=None,
        ),
    )


CHAMPION = estimate(0.20, 0.19, 0.21)


def test_a_clearly_better_candidate_inside_its_frame_is_promoted() -> None:
    result = promotion_gate(candidate=estimate(0.25, 0.23, 0.27), champion=CHAMPION)
    assert result.verdict == "promote"
    assert result.reasons == ["every check passed"]


def test_a_candidate_whose_lower_bound_does_not_clear_the_lift_is_rejected() -> None:
    result = promotion_gate(
        candidate=estimate(0.22, 0.195, 0.245), champion=CHAMPION, config=GateConfig(min_lift=0.01)
    )
    assert result.verdict == "reject"
    assert any("lower bound 0.1950" in r for r in result.reasons)


def test_a_breached_guardrail_or_thin_evidence_rejects() -> None:
    unsubscribes = Guardrail("unsubscribe_rate", estimate(0.05, 0.04, 0.06), threshold=0.03)
    result = promotion_gate(
        candidate=estimate(0.30, 0.28, 0.32, ess=40), champion=CHAMPION, guardrails=[unsubscribes]
    )
    assert result.verdict == "reject"
    names = {c.name for c in result.checks if not c.passed}
    assert names == {"guardrail:unsubscribe_rate", "effective_sample_size"}


def test_a_good_candidate_that_leaves_its_frame_needs_approval() -> None:
    result = promotion_gate(
        candidate=estimate(0.25, 0.23, 0.27),
        champion=CHAMPION,
        frame_violations=["epsilon 0.4 is above the frame's max_epsilon 0.3"],
    )
    assert result.verdict == "needs_approval"
    assert result.reasons == ["leaves its frame: epsilon 0.4 is above the frame's max_epsilon 0.3"]
    assert result.to_dict()["verdict"] == "needs_approval"
