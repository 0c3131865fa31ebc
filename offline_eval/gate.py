"""The promotion gate: may a candidate policy replace the champion? A pure function.

Both policies are estimated on the same held-out recent logs. The candidate is promoted only if
the lower end of its interval beats the champion's estimate by at least the minimum lift, every
guardrail estimate (unsubscribe rate, complaint rate, offer cost per decision) stays within the
frame's threshold, the effective sample size behind the estimate is large enough to trust, and
the candidate stays inside its frame. A candidate that passes everything but leaves its frame
needs a manager's approval. Every check is spelled out in the result, passed or failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from offline_eval.estimators import Estimate

Verdict = Literal["promote", "reject", "needs_approval"]


@dataclass(frozen=True)
class GateConfig:
    min_lift: float = 0.0
    """Absolute lift the candidate's lower bound must show over the champion's estimate."""
    min_effective_sample_size: float = 100.0


@dataclass(frozen=True)
class Guardrail:
    """A guardrail outcome estimated under the candidate, and the most the frame allows."""

    name: str
    estimate: Estimate
    threshold: float


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    checks: tuple[Check, ...]
    candidate: Estimate
    champion: Estimate
    frame_violations: tuple[str, ...] = field(default=())

    @property
    def reasons(self) -> list[str]:
        """What decided the verdict: the failed checks (or why approval is needed)."""
        failed = [c.detail for c in self.checks if not c.passed]
        if self.verdict == "needs_approval":
            return [f"leaves its frame: {v}" for v in self.frame_violations]
        return failed or ["every check passed"]

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
            "candidate": self.candidate.to_dict(),
            "champion": self.champion.to_dict(),
            "frame_violations": list(self.frame_violations),
        }


def promotion_gate(
    *,
    candidate: Estimate,
    champion: Estimate,
    guardrails: Sequence[Guardrail] = (),
    frame_violations: Sequence[str] = (),
    config: GateConfig = GateConfig(),
) -> GateResult:
    """Promote, reject or ask for approval, with every check and its numbers."""
    lift = candidate.ci_low - champion.value
    checks = [
        Check(
            "lift",
            lift >= config.min_lift,
            f"{candidate.estimator} lower bound {candidate.ci_low:.4f} vs champion "
            f"{champion.value:.4f}: lift {lift:+.4f}, needed {config.min_lift:+.4f}",
        ),
        Check(
            "effective_sample_size",
            candidate.diagnostics.effective_sample_size >= config.min_effective_sample_size,
            f"effective sample size {candidate.diagnostics.effective_sample_size:.0f}, needed "
            f"{config.min_effective_sample_size:.0f}",
        ),
    ]
    checks += [
        Check(
            f"guardrail:{g.name}",
            g.estimate.value <= g.threshold,
            f"{g.name} {g.estimate.value:.4f} (95 % up to {g.estimate.ci_high:.4f}), "
            f"threshold {g.threshold:.4f}",
        )
        for g in guardrails
    ]
    checks.append(
        Check(
            "inside_frame",
            not frame_violations,
            "inside its frame" if not frame_violations else "; ".join(frame_violations),
        )
    )
    blocking = [c for c in checks if not c.passed and c.name != "inside_frame"]
    if blocking:
        verdict: Verdict = "reject"
    elif frame_violations:
        verdict = "needs_approval"
    else:
        verdict = "promote"
    return GateResult(
        verdict=verdict,
        checks=tuple(checks),
        candidate=candidate,
        champion=champion,
        frame_violations=tuple(frame_violations),
    )
