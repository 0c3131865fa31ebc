"""Frame states, the guardrails' window counts and frame versions in memory.

The SQL store reads window counts from the decision log and its rewards; here the decisions a
test wants counted are logged with `log`, one `LoggedOutcome` each.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime

from optimizer.core.catalog import FrameSpec, frame_widenings
from optimizer.core.values import DecisionReason, FrameStatus
from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.audit import AuditEntry
from optimizer.ports.governance import FrameState, FrameVersionInfo, WindowCounts, WindowSpend


@dataclass(frozen=True)
class LoggedOutcome:
    """A logged decision as the guardrails see it: `rewarded` says whether it has a reward
    (contact and holdout counts only see those), `offer_cost` is what its chosen offer costs."""

    frame_key: str
    created_at: datetime
    reason: DecisionReason
    offer_cost: float = 0.0
    rewarded: bool = True
    converted: bool = False
    unsubscribed: bool = False
    complained: bool = False


class MemoryGovernanceStore:
    def __init__(self, audit: MemoryAuditLog | None = None) -> None:
        self.audit = audit if audit is not None else MemoryAuditLog()
        self._states: dict[str, FrameState] = {}
        self._outcomes: list[LoggedOutcome] = []
        self._versions: dict[tuple[str, int], tuple[FrameVersionInfo, FrameSpec]] = {}
        self._lock = threading.Lock()

    def log(self, outcome: LoggedOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def add_version(self, info: FrameVersionInfo, spec: FrameSpec) -> None:
        with self._lock:
            self._versions[(info.key, info.version)] = (info, spec)

    def states(self) -> dict[str, FrameState]:
        with self._lock:
            return dict(self._states)

    def set_state(self, state: FrameState, *, audit: AuditEntry | None = None) -> None:
        with self._lock:
            self._states[state.frame_key] = state
            if audit is not None:
                self.audit.add(audit)

    def _window(self, frame_key: str, since: datetime, until: datetime) -> list[LoggedOutcome]:
        with self._lock:
            return [
                o
                for o in self._outcomes
                if o.frame_key == frame_key and since <= o.created_at < until
            ]

    def window_counts(self, *, frame_key: str, since: datetime, until: datetime) -> WindowCounts:
        rewarded = [o for o in self._window(frame_key, since, until) if o.rewarded]
        contacts = [o for o in rewarded if o.reason == DecisionReason.policy]
        holdout = [o for o in rewarded if o.reason == DecisionReason.holdout]
        return WindowCounts(
            contacts=len(contacts),
            unsubscribes=sum(o.unsubscribed for o in contacts),
            complaints=sum(o.complained for o in contacts),
            converted=sum(o.converted for o in contacts),
            holdout=len(holdout),
            holdout_converted=sum(o.converted for o in holdout),
        )

    def window_spend(self, *, frame_key: str, since: datetime, until: datetime) -> WindowSpend:
        served = (DecisionReason.policy, DecisionReason.policy_no_contact)
        decided = [o for o in self._window(frame_key, since, until) if o.reason in served]
        return WindowSpend(
            decisions=len(decided), offer_cost=float(sum(o.offer_cost for o in decided))
        )

    def versions(self, *, key: str | None = None) -> list[FrameVersionInfo]:
        with self._lock:
            found = [i for i, _ in self._versions.values() if key is None or i.key == key]
        return sorted(found, key=lambda i: (i.key, i.version))

    def spec(self, *, key: str, version: int) -> FrameSpec | None:
        with self._lock:
            entry = self._versions.get((key, version))
        return None if entry is None else entry[1]

    def reject(
        self, *, key: str, version: int, actor: str, now: datetime, reason: str, via: str = "api"
    ) -> FrameVersionInfo:
        with self._lock:
            entry = self._versions.get((key, version))
            if entry is None:
                raise LookupError(f"frame {key!r} has no version {version}")
            frame, spec = entry
            if frame.status != FrameStatus.draft:
                raise ValueError(
                    f"frame {key} v{version} is {frame.status}, only a draft can be rejected"
                )
            rejected = replace(frame, status=FrameStatus.retired)
            self._versions[(key, version)] = (rejected, spec)
            self.audit.add(
                AuditEntry(
                    actor=actor,
                    action="frame.reject",
                    subject=f"{key} v{version}",
                    at=now,
                    details={"via": via, "reason": reason},
                )
            )
        return rejected

    def approve(
        self,
        *,
        key: str,
        version: int,
        approver: str,
        now: datetime,
        reason: str = "",
        via: str = "api",
    ) -> FrameVersionInfo:
        with self._lock:
            versions = {v: entry for (k, v), entry in self._versions.items() if k == key}
            if version not in versions:
                raise LookupError(f"frame {key!r} has no version {version}")
            frame, spec = versions[version]
            if frame.status != FrameStatus.draft:
                raise ValueError(
                    f"frame {key} v{version} is {frame.status}, only a draft can be approved"
                )
            served = [v for v, (i, _) in versions.items() if i.status != FrameStatus.draft]
            if served and max(served) > version:
                raise ValueError(f"frame {key} v{version} is older than the serving v{max(served)}")
            active = [(i, s) for i, s in versions.values() if i.status == FrameStatus.active]
            widens = frame_widenings(active[0][1], spec) if active else []
            for old, old_spec in versions.values():
                if old.status in (FrameStatus.active, FrameStatus.approved):
                    retired = replace(old, status=FrameStatus.retired)
                    self._versions[(key, old.version)] = (retired, old_spec)
            approved = replace(
                frame, status=FrameStatus.active, approved_by=approver, approved_at=now
            )
            self._versions[(key, version)] = (approved, spec)
            self.audit.add(
                AuditEntry(
                    actor=approver,
                    action="frame.approve",
                    subject=f"{key} v{version}",
                    at=now,
                    details={"via": via, "widens": widens, "reason": reason},
                )
            )
        return approved
