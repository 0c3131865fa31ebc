"""The guardrail monitor on in-memory stores: which windows trip the kill switch, and what the
kill switch leaves behind (safe mode, a rollback attempt, an audit entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.core.catalog import FrameSpec, FrameVersion, GuardrailSpec
from optimizer.core.values import DecisionReason
from optimizer.errors import ConflictError
from optimizer.guardrails import NORMAL, SAFE, GuardrailMonitor
from optimizer.memory.audit import MemoryAuditLog
from optimizer.memory.governance import LoggedOutcome, MemoryGovernanceStore
from optimizer.ports.audit import AuditEntry

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = "churn_prevention"
LIMITS = GuardrailSpec(
    max_unsubscribe_rate=0.05,
    max_complaint_rate=0.05,
    max_offer_cost_per_decision=4.0,
    max_conversion_drop=0.2,
    min_decisions=20,
)


def frame(limits: GuardrailSpec = LIMITS) -> FrameVersion:
    spec = FrameSpec(
        key=KEY,
        name="Churn prevention",
        triggers=["health_c_to_d"],
        health_classes=["D"],
        offers=["free_month", "usage_tip"],
        channels=["email"],
        send_times=["immediate"],
        max_offer_cost=10.0,
        valid_from=date(2026, 1, 1),
        guardrails=limits,
    )
    return FrameVersion(
        id=1, key=KEY, version=1, status="active", spec=spec, approved_by="m", approved_at=NOW
    )


@dataclass
class World:
    store: MemoryGovernanceStore = field(default_factory=MemoryGovernanceStore)

    @property
    def audit(self) -> MemoryAuditLog:
        return self.store.audit

    @property
    def guardrails(self) -> GuardrailMonitor:
        return GuardrailMonitor(self.store, self.audit)

    def contacts(self, n: int, *, at: datetime = NOW - timedelta(days=1), **outcome: bool) -> None:
        for _ in range(n):
            self.store.log(
                LoggedOutcome(KEY, created_at=at, reason=DecisionReason.policy, **outcome)
            )

    def promoted(self, *, at: datetime) -> None:
        self.audit.add(AuditEntry(actor="ops", action="policy.promote", subject=f"{KEY}:4", at=at))

    def monitor(self) -> str:
        (health,) = self.guardrails.monitor([frame()], rollback=None, now=NOW)
        return health.mode


@dataclass
class Rollbacks:
    fail_with: Exception | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    @dataclass(frozen=True)
    class Result:
        version: str

    def __call__(self, policy: str, /, *, actor: str, reason: str) -> Rollbacks.Result:
        self.calls.append((policy, actor))
        if self.fail_with is not None:
            raise self.fail_with
        return self.Result(version="3")


@pytest.mark.parametrize("signal", ["unsubscribed", "complained"])
def test_a_bad_rate_trips_only_once_the_frame_has_min_decisions_contacts(signal: str) -> None:
    world = World()
    world.contacts(LIMITS.min_decisions - 1, **{signal: True})
    assert world.monitor() == NORMAL
    assert world.audit.entries(action="frame.") == []

    world.contacts(1, **{signal: True})
    assert world.monitor() == SAFE
    assert world.store.states()[KEY].mode == SAFE


@given(
    contacts=st.integers(min_value=0, max_value=60),
    share=st.floats(min_value=0.0, max_value=1.0),
)
def test_the_unsubscribe_rate_breaches_exactly_when_it_is_above_the_limit_past_min_decisions(
    contacts: int, share: float
) -> None:
    world = World()
    bad = round(contacts * share)
    world.contacts(bad, unsubscribed=True)
    world.contacts(contacts - bad)
    health = world.guardrails.health(frame(), now=NOW, window=timedelta(days=7), mode=NORMAL)
    expected = contacts >= LIMITS.min_decisions and bad / contacts > LIMITS.max_unsubscribe_rate
    assert any("unsubscribe rate" in b for b in health.breaches) == expected


def test_offer_cost_trips_past_min_decisions_counting_no_contact_decisions() -> None:
    world = World()
    for i in range(LIMITS.min_decisions):
        reason = DecisionReason.policy if i % 2 else DecisionReason.policy_no_contact
        cost = 9.99 if reason == DecisionReason.policy else 0.0
        world.store.log(
            LoggedOutcome(KEY, created_at=NOW - timedelta(hours=1), reason=reason, offer_cost=cost)
        )
    health = world.guardrails.health(frame(), now=NOW, window=timedelta(days=7), mode=NORMAL)
    assert health.decisions == LIMITS.min_decisions
    assert health.offer_cost_per_decision == pytest.approx(9.99 / 2)
    assert world.monitor() == SAFE
    assert "offer cost per decision" in world.store.states()[KEY].reason


def test_expensive_decisions_trip_on_cost_only_once_there_are_min_decisions() -> None:
    world = World()

    def expensive(n: int) -> None:
        for _ in range(n):
            world.store.log(
                LoggedOutcome(KEY, NOW - timedelta(hours=1), DecisionReason.policy, offer_cost=9.99)
            )

    expensive(LIMITS.min_decisions - 1)
    assert world.monitor() == NORMAL
    expensive(1)
    assert world.monitor() == SAFE


def test_conversion_drop_after_a_promotion_trips_against_the_previous_champion() -> None:
    promoted = NOW - timedelta(days=2)
    world = World()
    world.audit.add(
        AuditEntry(actor="ops", action="policy.promote", subject=f"{KEY}:4", at=promoted)
    )
    world.contacts(10, at=promoted - timedelta(days=1), converted=True)
    world.contacts(10, at=promoted - timedelta(days=1))
    world.contacts(2, at=promoted + timedelta(hours=1), converted=True)
    world.contacts(18, at=promoted + timedelta(hours=1))

    health = world.guardrails.health(frame(), now=NOW, window=timedelta(days=7), mode=NORMAL)

    assert health.previous_conversion_rate == pytest.approx(0.5)
    assert health.conversion_rate == pytest.approx(0.1)
    assert any("conversion rate" in b for b in health.breaches)


def test_a_steady_conversion_rate_after_a_promotion_does_not_trip() -> None:
    promoted = NOW - timedelta(days=2)
    world = World()
    world.audit.add(
        AuditEntry(actor="ops", action="policy.promote", subject=f"{KEY}:4", at=promoted)
    )
    for at in (promoted - timedelta(days=1), promoted + timedelta(hours=1)):
        world.contacts(10, at=at, converted=True)
        world.contacts(10, at=at)
    assert world.monitor() == NORMAL


def test_the_kill_switch_sets_safe_mode_rolls_back_and_audits_once() -> None:
    world = World()
    world.contacts(LIMITS.min_decisions, complained=True)
    rollbacks = Rollbacks()

    for _ in range(2):
        (health,) = world.guardrails.monitor([frame()], rollback=rollbacks, now=NOW)

    assert health.mode == SAFE
    assert rollbacks.calls == [(KEY, "guardrail monitor")]
    (entry,) = world.audit.entries(action="frame.kill_switch")
    assert entry.subject == KEY
    assert entry.details is not None
    assert entry.details["rollback"] == "3"
    assert entry.details["breaches"] == world.store.states()[KEY].reason.split("; ")


def test_safe_mode_holds_when_the_rollback_is_refused() -> None:
    world = World()
    world.contacts(LIMITS.min_decisions, unsubscribed=True)
    rollbacks = Rollbacks(fail_with=ConflictError("version", "no earlier champion"))

    assert world.guardrails.monitor([frame()], rollback=rollbacks, now=NOW)[0].mode == SAFE

    (entry,) = world.audit.entries(action="frame.kill_switch")
    assert entry.details is not None
    assert entry.details["rollback"] == "not rolled back: no earlier champion"
    assert world.store.states()[KEY].mode == SAFE


def test_resume_returns_to_normal_mode_with_an_audit_entry() -> None:
    world = World()
    world.contacts(LIMITS.min_decisions, unsubscribed=True)
    world.monitor()

    world.guardrails.resume(KEY, actor="m.keller", reason="mailing list fixed")

    state = world.store.states()[KEY]
    assert (state.mode, state.reason, state.changed_by) == (
        NORMAL,
        "mailing list fixed",
        "m.keller",
    )
    (entry,) = world.audit.entries(action="frame.resume")
    assert entry.details == {"reason": "mailing list fixed"}


def test_decisions_outside_the_window_do_not_count() -> None:
    world = World()
    world.contacts(LIMITS.min_decisions, at=NOW - timedelta(days=8), unsubscribed=True)
    world.contacts(LIMITS.min_decisions, at=NOW, unsubscribed=True)
    health = world.guardrails.health(frame(), now=NOW, window=timedelta(days=7), mode=NORMAL)
    assert (health.contacts, health.decisions, health.breaches) == (0, 0, [])
