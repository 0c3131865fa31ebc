"""The guardrail monitor and the kill switch.

For every active frame a job compares live outcomes of the recent window with the frame's
thresholds: unsubscribe and complaint rates among contacts, the realised offer cost per policy
decision (contact or no contact, as the promotion gate counts it), and the conversion rate of the
contacts made since the policy's last promotion against those made before it (the previous
champion). A breach, once the frame has enough decisions to judge, switches the frame to safe mode
(its safe default combination, or no contact), rolls the champion back, and writes the audit log.
A person with the approve permission resumes the frame when the cause is understood.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from optimizer.core.catalog import FrameVersion, GuardrailSpec
from optimizer.core.values import utcnow
from optimizer.errors import ConflictError, NotFoundError
from optimizer.ports.audit import AuditEntry, AuditLog
from optimizer.ports.governance import (
    NORMAL,
    SAFE,
    FrameState,
    GuardrailStore,
    WindowCounts,
    WindowSpend,
)

log = logging.getLogger("campopt.guardrails")

__all__ = ["NORMAL", "SAFE", "FrameHealth", "GuardrailMonitor", "Rollback"]


class RolledBack(Protocol):
    @property
    def version(self) -> str: ...


class Rollback(Protocol):
    """Moves a policy's champion back (the lifecycle's `rollback`)."""

    def __call__(self, policy: str, /, *, actor: str, reason: str) -> RolledBack: ...


@dataclass(frozen=True)
class FrameHealth:
    frame_key: str
    mode: str
    window_days: float
    contacts: int
    unsubscribe_rate: float | None
    complaint_rate: float | None
    conversion_rate: float | None
    holdout_conversion_rate: float | None
    previous_conversion_rate: float | None
    decisions: int = 0
    offer_cost: float = 0.0
    offer_cost_per_decision: float | None = None
    max_offer_cost_per_decision: float | None = None
    breaches: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def breaches(
    limits: GuardrailSpec,
    counts: WindowCounts,
    spend: WindowSpend,
    *,
    current_rate: float | None,
    previous_rate: float | None,
) -> list[str]:
    """The thresholds a window breaches; rates count only past `min_decisions`."""
    found = []
    cost = spend.offer_cost / spend.decisions if spend.decisions else None
    if (
        spend.decisions >= limits.min_decisions
        and cost is not None
        and cost > limits.max_offer_cost_per_decision
    ):
        found.append(
            f"offer cost per decision {cost:.2f} above {limits.max_offer_cost_per_decision:.2f}"
        )
    if counts.contacts < limits.min_decisions:
        return found
    unsubscribe_rate = _rate(counts.unsubscribes, counts.contacts)
    complaint_rate = _rate(counts.complaints, counts.contacts)
    if unsubscribe_rate is not None and unsubscribe_rate > limits.max_unsubscribe_rate:
        found.append(
            f"unsubscribe rate {unsubscribe_rate:.4f} above {limits.max_unsubscribe_rate:.4f}"
        )
    if complaint_rate is not None and complaint_rate > limits.max_complaint_rate:
        found.append(f"complaint rate {complaint_rate:.4f} above {limits.max_complaint_rate:.4f}")
    if (
        previous_rate is not None
        and current_rate is not None
        and previous_rate > 0
        and current_rate < previous_rate * (1 - limits.max_conversion_drop)
    ):
        found.append(
            f"conversion rate {current_rate:.4f} dropped more than "
            f"{limits.max_conversion_drop:.0%} below the previous champion's {previous_rate:.4f}"
        )
    return found


class GuardrailMonitor:
    """Judges frames on their live outcomes and trips the kill switch of those that breach."""

    def __init__(self, frames: GuardrailStore, audit: AuditLog) -> None:
        self.frames = frames
        self.audit = audit

    def last_promotion(self, policy: str) -> datetime | None:
        for entry in self.audit.entries(action="policy.", subject=f"{policy}:", limit=200):
            if entry.action in ("policy.promote", "policy.approve", "policy.rollback"):
                return entry.at
        return None

    def health(
        self, frame: FrameVersion, *, now: datetime, window: timedelta, mode: str
    ) -> FrameHealth:
        """Live metrics of a frame in [now - window, now) against its guardrail thresholds."""
        since = now - window
        counts = self.frames.window_counts(frame_key=frame.key, since=since, until=now)
        spend = self.frames.window_spend(frame_key=frame.key, since=since, until=now)
        return self.health_of(frame, counts, spend, now=now, window=window, mode=mode)

    def health_of(
        self,
        frame: FrameVersion,
        counts: WindowCounts,
        spend: WindowSpend,
        *,
        now: datetime,
        window: timedelta,
        mode: str,
    ) -> FrameHealth:
        """`health` from the window's counts and spend read already (the cockpit shows them
        too, so it reads them once)."""
        since = now - window
        promoted = self.last_promotion(frame.key)
        previous_rate = None
        current_rate = _rate(counts.converted, counts.contacts)
        if promoted is not None and since < promoted < now:
            before = self.frames.window_counts(
                frame_key=frame.key, since=promoted - window, until=promoted
            )
            after = self.frames.window_counts(frame_key=frame.key, since=promoted, until=now)
            previous_rate = _rate(before.converted, before.contacts)
            current_rate = _rate(after.converted, after.contacts)
        limits = frame.spec.guardrails
        return FrameHealth(
            frame_key=frame.key,
            mode=mode,
            window_days=window.total_seconds() / 86400,
            contacts=counts.contacts,
            unsubscribe_rate=_rate(counts.unsubscribes, counts.contacts),
            complaint_rate=_rate(counts.complaints, counts.contacts),
            conversion_rate=current_rate,
            holdout_conversion_rate=_rate(counts.holdout_converted, counts.holdout),
            previous_conversion_rate=previous_rate,
            decisions=spend.decisions,
            offer_cost=spend.offer_cost,
            offer_cost_per_decision=(
                spend.offer_cost / spend.decisions if spend.decisions else None
            ),
            max_offer_cost_per_decision=limits.max_offer_cost_per_decision,
            breaches=breaches(
                limits, counts, spend, current_rate=current_rate, previous_rate=previous_rate
            ),
        )

    def monitor(
        self,
        frames: list[FrameVersion],
        *,
        rollback: Rollback | None,
        now: datetime | None = None,
        window: timedelta = timedelta(days=7),
        actor: str = "guardrail monitor",
    ) -> list[FrameHealth]:
        """Check every frame; trip the kill switch on those in normal mode that breach."""
        now = now or utcnow()
        modes = {key: state.mode for key, state in self.frames.states().items()}
        results = []
        for frame in frames:
            mode = modes.get(frame.key, NORMAL)
            health = self.health(frame, now=now, window=window, mode=mode)
            if health.breaches and mode == NORMAL:
                self.trip(frame.key, health=health, rollback=rollback, actor=actor, now=now)
                health = replace(health, mode=SAFE)
            results.append(health)
        return results

    def trip(
        self,
        frame_key: str,
        *,
        health: FrameHealth,
        rollback: Rollback | None,
        actor: str,
        now: datetime,
    ) -> None:
        """The kill switch: safe mode for the frame, champion rolled back, all of it audited.

        Safe mode comes first and does not depend on the registry: if the rollback fails (no
        earlier champion, MLflow unreachable), the frame is still protected and the audit says
        why.
        """
        self.frames.set_state(
            FrameState(
                frame_key=frame_key,
                mode=SAFE,
                reason="; ".join(health.breaches),
                changed_at=now,
                changed_by=actor,
                metrics=health.to_dict(),
            )
        )
        rolled_back: str | None = None
        if rollback is not None:
            try:
                rolled_back = rollback(frame_key, actor=actor, reason="guardrail breach").version
            except (ConflictError, NotFoundError) as exc:
                rolled_back = f"not rolled back: {exc.message}"
            except Exception as exc:
                log.exception("kill switch of %s: the rollback failed", frame_key)
                rolled_back = f"not rolled back: {exc}"
        self.audit.add(
            AuditEntry(
                actor=actor,
                action="frame.kill_switch",
                subject=frame_key,
                at=now,
                details={
                    "breaches": health.breaches,
                    "metrics": health.to_dict(),
                    "rollback": rolled_back,
                },
            )
        )

    def resume(self, frame_key: str, *, actor: str, reason: str) -> None:
        """Back to normal mode; the state and its audit entry commit together."""
        now = utcnow()
        self.frames.set_state(
            FrameState(
                frame_key=frame_key, mode=NORMAL, reason=reason, changed_at=now, changed_by=actor
            ),
            audit=AuditEntry(
                actor=actor,
                action="frame.resume",
                subject=frame_key,
                at=now,
                details={"reason": reason},
            ),
        )
