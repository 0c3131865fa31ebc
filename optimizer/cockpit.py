"""What a marketing manager sees of each frame: how it stands, how much it decides, contacts
and converts, its uplift against the holdout with a 95 % interval, its spend against the cost
limit, the guardrails against their thresholds and the policy that serves.

The numbers come from the same stores the guardrail monitor and the frame status read; the
arithmetic here (days, uplift, interval, what differs between frame versions) is pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from optimizer.core.catalog import FrameSpec
from optimizer.core.values import FrameStatus
from optimizer.guardrails import GuardrailMonitor
from optimizer.ports.cockpit import CockpitReader, DayCounts
from optimizer.ports.governance import NORMAL, SAFE, FrameState, FrameVersionInfo, GovernanceStore
from optimizer.ports.learning import ServingRecord

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Uplift:
    """Conversion rate of the policy's contacts minus that of the holdout, with Newcombe's
    hybrid score interval (Newcombe 1998, method 10): it stays inside [-1, 1] and behaves with
    few conversions, where the Wald interval does not."""

    contacts: int
    contact_conversions: int
    holdout: int
    holdout_conversions: int
    contact_rate: float | None
    holdout_rate: float | None
    difference: float | None
    low: float | None
    high: float | None


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval of a proportion."""
    if n <= 0:
        raise ValueError("n: must be positive")
    if not 0 <= successes <= n:
        raise ValueError("successes: must lie in [0, n]")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift(
    contact_conversions: int, contacts: int, holdout_conversions: int, holdout: int
) -> Uplift:
    """The uplift and its interval; rates and bounds are None when a group is empty."""
    rate1 = contact_conversions / contacts if contacts else None
    rate0 = holdout_conversions / holdout if holdout else None
    difference = low = high = None
    if rate1 is not None and rate0 is not None:
        l1, u1 = wilson(contact_conversions, contacts)
        l0, u0 = wilson(holdout_conversions, holdout)
        difference = rate1 - rate0
        low = difference - math.sqrt((rate1 - l1) ** 2 + (u0 - rate0) ** 2)
        high = difference + math.sqrt((u1 - rate1) ** 2 + (rate0 - l0) ** 2)
    return Uplift(
        contacts,
        contact_conversions,
        holdout,
        holdout_conversions,
        rate1,
        rate0,
        difference,
        low,
        high,
    )


@dataclass(frozen=True)
class GuardrailReading:
    """One live value against its threshold; `breached` only counts past `min_decisions`."""

    name: str
    value: float | None
    threshold: float | None
    breached: bool


@dataclass(frozen=True)
class FrameOverview:
    key: str
    name: str
    status: str
    """`active`, `safe mode` or `retired` (no version serves)."""
    mode_reason: str
    mode_since: datetime | None
    active_version: int | None
    window_days: float
    days: Sequence[DayCounts]
    uplift: Uplift
    decisions: int
    offer_cost: float
    offer_cost_per_decision: float | None
    max_offer_cost_per_decision: float | None
    max_offer_cost: float | None
    guardrails: Sequence[GuardrailReading]
    serving: ServingRecord | None


def window_days(now: datetime, days: int) -> list[date]:
    """The last `days` UTC days up to and including today's."""
    today = now.date()
    return [today - timedelta(days=i) for i in range(days - 1, -1, -1)]


def frame_status(versions: Sequence[FrameVersionInfo], state: FrameState | None) -> str:
    if state is not None and state.mode == SAFE:
        return "safe mode"
    if any(v.status == FrameStatus.active for v in versions):
        return "active"
    return "retired"


class Cockpit:
    """Overviews of every frame, read through the governance store and the cockpit reader."""

    def __init__(
        self, frames: GovernanceStore, reader: CockpitReader, monitor: GuardrailMonitor
    ) -> None:
        self.frames = frames
        self.reader = reader
        self.monitor = monitor

    def overviews(
        self,
        *,
        active: Mapping[str, Any],
        serving: Mapping[str, ServingRecord],
        now: datetime,
        window: timedelta,
    ) -> list[FrameOverview]:
        """`active` maps frame keys to the catalog's active `FrameVersion`s."""
        by_key: dict[str, list[FrameVersionInfo]] = {}
        for info in self.frames.versions():
            by_key.setdefault(info.key, []).append(info)
        states = self.frames.states()
        return [
            self._overview(key, versions, active.get(key), states.get(key), serving, now, window)
            for key, versions in sorted(by_key.items())
        ]

    def _overview(
        self,
        key: str,
        versions: list[FrameVersionInfo],
        frame: Any,
        state: FrameState | None,
        serving: Mapping[str, ServingRecord],
        now: datetime,
        window: timedelta,
    ) -> FrameOverview:
        days = window_days(now, max(1, math.ceil(window.total_seconds() / 86400)))
        counts = self.frames.window_counts(frame_key=key, since=now - window, until=now)
        spend = self.frames.window_spend(frame_key=key, since=now - window, until=now)
        readings: list[GuardrailReading] = []
        limit = max_cost = None
        if frame is not None:
            health = self.monitor.health_of(
                frame, counts, spend, now=now, window=window, mode=state.mode if state else NORMAL
            )
            limits = frame.spec.guardrails
            limit, max_cost = limits.max_offer_cost_per_decision, frame.spec.max_offer_cost
            breached = " ".join(health.breaches)
            floor = (
                None
                if health.previous_conversion_rate is None
                else health.previous_conversion_rate * (1 - limits.max_conversion_drop)
            )
            readings = [
                GuardrailReading(
                    "unsubscribe rate",
                    health.unsubscribe_rate,
                    limits.max_unsubscribe_rate,
                    "unsubscribe" in breached,
                ),
                GuardrailReading(
                    "complaint rate",
                    health.complaint_rate,
                    limits.max_complaint_rate,
                    "complaint" in breached,
                ),
                GuardrailReading(
                    "offer cost per decision",
                    health.offer_cost_per_decision,
                    limit,
                    "offer cost" in breached,
                ),
                GuardrailReading(
                    "conversion rate (floor: previous champion)",
                    health.conversion_rate,
                    floor,
                    "conversion rate" in breached,
                ),
            ]
        return FrameOverview(
            key=key,
            name=versions[-1].name,
            status=frame_status(versions, state),
            mode_reason=state.reason if state else "",
            mode_since=state.changed_at if state else None,
            active_version=frame.version if frame is not None else None,
            window_days=window.total_seconds() / 86400,
            days=self.reader.daily_counts(frame_key=key, days=days),
            uplift=uplift(
                counts.converted, counts.contacts, counts.holdout_converted, counts.holdout
            ),
            decisions=spend.decisions,
            offer_cost=spend.offer_cost,
            offer_cost_per_decision=spend.offer_cost / spend.decisions if spend.decisions else None,
            max_offer_cost_per_decision=limit,
            max_offer_cost=max_cost,
            guardrails=readings,
            serving=serving.get(key),
        )


@dataclass(frozen=True)
class Change:
    """One field of a frame that differs between the serving version and a draft."""

    field: str
    serving: str
    draft: str


def frame_changes(serving: FrameSpec | None, draft: FrameSpec) -> list[Change]:
    """Field by field, what a draft changes (every field when nothing serves)."""
    old = _flat(serving.model_dump(mode="json", exclude={"approval"})) if serving else {}
    new = _flat(draft.model_dump(mode="json", exclude={"approval"}))
    return [
        Change(name, old.get(name, "—"), new.get(name, "—"))
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]


def _flat(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict) and value:
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: _render(value)}


def _render(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_render(v) for v in value) or "(none)"
    if value is None:
        return "—"
    return str(value)
