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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.engine import session_scope
from optimizer.core.catalog import FrameVersion
from optimizer.core.values import utcnow
from optimizer.errors import ConflictError, NotFoundError

log = logging.getLogger("campopt.guardrails")

SAFE = "safe"
NORMAL = "normal"


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


def last_promotion(engine: Engine, policy: str) -> datetime | None:
    with session_scope(engine) as session:
        for entry in queries.audit_entries(
            session, action="policy.", subject=f"{policy}:", limit=200
        ):
            if entry.action in ("policy.promote", "policy.approve", "policy.rollback"):
                return entry.at
    return None


def frame_health(
    engine: Engine, frame: FrameVersion, *, now: datetime, window: timedelta, mode: str
) -> FrameHealth:
    """Live metrics of a frame in [now - window, now) against its guardrail thresholds."""
    since = now - window
    with session_scope(engine) as session:
        counts = queries.frame_window_counts(session, frame_key=frame.key, since=since, until=now)
        spend = queries.frame_window_spend(session, frame_key=frame.key, since=since, until=now)
    promoted = last_promotion(engine, frame.key)
    previous_rate = None
    current_rate = _rate(counts.converted, counts.contacts)
    if promoted is not None and since < promoted < now:
        with session_scope(engine) as session:
            before = queries.frame_window_counts(
                session, frame_key=frame.key, since=promoted - window, until=promoted
            )
            after = queries.frame_window_counts(
                session, frame_key=frame.key, since=promoted, until=now
            )
        previous_rate = _rate(before.converted, before.contacts)
        current_rate = _rate(after.converted, after.contacts)
    limits = frame.spec.guardrails
    health = FrameHealth(
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
        offer_cost_per_decision=(spend.offer_cost / spend.decisions if spend.decisions else None),
        max_offer_cost_per_decision=limits.max_offer_cost_per_decision,
    )
    if (
        spend.decisions >= limits.min_decisions
        and health.offer_cost_per_decision is not None
        and health.offer_cost_per_decision > limits.max_offer_cost_per_decision
    ):
        health.breaches.append(
            f"offer cost per decision {health.offer_cost_per_decision:.2f} "
            f"above {limits.max_offer_cost_per_decision:.2f}"
        )
    if counts.contacts < limits.min_decisions:
        return health
    if (
        health.unsubscribe_rate is not None
        and health.unsubscribe_rate > limits.max_unsubscribe_rate
    ):
        health.breaches.append(
            f"unsubscribe rate {health.unsubscribe_rate:.4f} "
            f"above {limits.max_unsubscribe_rate:.4f}"
        )
    if health.complaint_rate is not None and health.complaint_rate > limits.max_complaint_rate:
        health.breaches.append(
            f"complaint rate {health.complaint_rate:.4f} above {limits.max_complaint_rate:.4f}"
        )
    if (
        previous_rate is not None
        and current_rate is not None
        and previous_rate > 0
        and current_rate < previous_rate * (1 - limits.max_conversion_drop)
    ):
        health.breaches.append(
            f"conversion rate {current_rate:.4f} dropped more than "
            f"{limits.max_conversion_drop:.0%} below the previous champion's {previous_rate:.4f}"
        )
    return health


def monitor(
    engine: Engine,
    frames: list[FrameVersion],
    *,
    rollback: Any | None,
    now: datetime | None = None,
    window: timedelta = timedelta(days=7),
    actor: str = "guardrail monitor",
) -> list[FrameHealth]:
    """Check every frame; trip the kill switch on those in normal mode that breach."""
    now = now or utcnow()
    with session_scope(engine) as session:
        modes = {k: s.mode for k, s in queries.frame_states(session).items()}
    results = []
    for frame in frames:
        mode = modes.get(frame.key, NORMAL)
        health = frame_health(engine, frame, now=now, window=window, mode=mode)
        if health.breaches and mode == NORMAL:
            trip(engine, frame.key, health=health, rollback=rollback, actor=actor, now=now)
            health = FrameHealth(**{**health.to_dict(), "mode": SAFE})
        results.append(health)
    return results


def trip(
    engine: Engine,
    frame_key: str,
    *,
    health: FrameHealth,
    rollback: Any | None,
    actor: str,
    now: datetime,
) -> None:
    """The kill switch: safe mode for the frame, champion rolled back, all of it audited.

    Safe mode comes first and does not depend on the registry: if the rollback fails (no
    earlier champion, MLflow unreachable), the frame is still protected and the audit says why.
    """
    with session_scope(engine, write=True) as session:
        queries.set_frame_state(
            session,
            frame_key=frame_key,
            mode=SAFE,
            reason="; ".join(health.breaches),
            actor=actor,
            now=now,
            metrics=health.to_dict(),
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
    with session_scope(engine, write=True) as session:
        queries.add_audit(
            session,
            actor=actor,
            action="frame.kill_switch",
            subject=frame_key,
            details={
                "breaches": health.breaches,
                "metrics": health.to_dict(),
                "rollback": rolled_back,
            },
            now=now,
        )


def resume(engine: Engine, frame_key: str, *, actor: str, reason: str) -> None:
    now = utcnow()
    with session_scope(engine, write=True) as session:
        queries.set_frame_state(
            session, frame_key=frame_key, mode=NORMAL, reason=reason, actor=actor, now=now
        )
        queries.add_audit(
            session,
            actor=actor,
            action="frame.resume",
            subject=frame_key,
            details={"reason": reason},
            now=now,
        )
