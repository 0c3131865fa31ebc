"""Frame governance: each frame's operating mode (the kill switch), the live outcomes the
guardrails judge, and the frame versions a manager approves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from optimizer.core.catalog import FrameSpec
from optimizer.core.values import FrameStatus
from optimizer.ports.audit import AuditEntry, JsonValue

NORMAL = "normal"
SAFE = "safe"
"""Frame modes: `safe` serves the frame's safe default (or no contact) after a guardrail breach."""


@dataclass(frozen=True)
class FrameState:
    """The operating mode of a frame (all its versions); a frame without one is `normal`."""

    frame_key: str
    mode: str
    reason: str
    changed_at: datetime
    changed_by: str
    metrics: Mapping[str, JsonValue] | None = None


@dataclass(frozen=True)
class WindowCounts:
    """Live outcome counts of a frame's decisions in a time window."""

    contacts: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    converted: int = 0
    holdout: int = 0
    holdout_converted: int = 0


@dataclass(frozen=True)
class WindowSpend:
    """Offer cost of a frame's policy decisions (contact or not) in a time window."""

    decisions: int = 0
    offer_cost: float = 0.0


@dataclass(frozen=True)
class FrameVersionInfo:
    """One stored version of a frame and where it stands in its lifecycle."""

    key: str
    name: str
    version: int
    status: FrameStatus
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime


class FrameStates(Protocol):
    def states(self) -> dict[str, FrameState]:
        """Every frame that has a state, by key."""
        ...

    def set_state(self, state: FrameState, *, audit: AuditEntry | None = None) -> None:
        """Replace the frame's state and append `audit`, in one transaction."""
        ...


class FrameOutcomes(Protocol):
    def window_counts(self, *, frame_key: str, since: datetime, until: datetime) -> WindowCounts:
        """Contacts (policy decisions) and holdout decisions made in [since, until) that have a
        reward, with their unsubscribes, complaints and conversions."""
        ...

    def window_spend(self, *, frame_key: str, since: datetime, until: datetime) -> WindowSpend:
        """Policy decisions in [since, until), contact or no contact, and the summed offer cost
        of what they chose (at the offers' current cost): the promotion gate's denominator."""
        ...


class GuardrailStore(FrameStates, FrameOutcomes, Protocol):
    """What the guardrail monitor reads and writes."""


class FrameVersions(Protocol):
    def versions(self, *, key: str | None = None) -> list[FrameVersionInfo]:
        """Versions of one frame, or of all frames, ordered by key and version."""
        ...

    def spec(self, *, key: str, version: int) -> FrameSpec | None:
        """What one version of a frame says, to compare a draft with what serves."""
        ...

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
        """A draft becomes active and the version it replaces retires; audited as
        `frame.approve` with the reason and the way in (`via`), in one transaction.
        `LookupError` for an unknown version, `ValueError` for one that is not a draft or is
        older than a version that has served."""
        ...

    def reject(
        self, *, key: str, version: int, actor: str, now: datetime, reason: str, via: str = "api"
    ) -> FrameVersionInfo:
        """A draft retires without serving; audited as `frame.reject` with the reason and the
        way in, in one transaction. `LookupError` for an unknown version, `ValueError` for one
        not a draft."""
        ...


class GovernanceStore(GuardrailStore, FrameVersions, Protocol):
    """Everything the governance routes need from the frames."""
