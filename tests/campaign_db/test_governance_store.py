"""Frame states, the guardrails' window counts and frame versions behave alike in memory and
on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from campaign_db.audit import SqlAuditLog
from campaign_db.engine import session_scope
from campaign_db.governance import SqlGovernanceStore
from campaign_db.models import Action, DecisionFrame, DecisionLog, Offer, Reward
from optimizer.core.catalog import FrameSpec, frame_widenings
from optimizer.core.values import DecisionReason, FrameStatus
from optimizer.memory.governance import LoggedOutcome, MemoryGovernanceStore
from optimizer.ports.audit import AuditEntry, AuditLog
from optimizer.ports.governance import (
    SAFE,
    FrameState,
    FrameVersionInfo,
    GovernanceStore,
    WindowCounts,
    WindowSpend,
)

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
KEY = "churn_prevention"


def spec(*, max_offer_cost: float = 10.0) -> FrameSpec:
    return FrameSpec(
        key=KEY,
        name="Churn prevention",
        triggers=["health_c_to_d"],
        health_classes=["D"],
        offers=["free_month"],
        channels=["email"],
        send_times=["immediate"],
        max_offer_cost=max_offer_cost,
        valid_from=date(2026, 1, 1),
    )


@dataclass
class Governance:
    """The store under test, the audit log it writes to, and how to put data behind it."""

    store: GovernanceStore
    audit: AuditLog
    log: Callable[[LoggedOutcome], None]
    add_version: Callable[[FrameVersionInfo, FrameSpec], None]


def _sql(engine: Engine) -> Governance:
    with session_scope(engine, write=True) as session:
        session.add(Offer(key="free_month", name="One month free", kind="incentive", cost=9.99))
        session.add(
            Action(id=1, signature="free_month|mail|email|immediate", offer_key="free_month")
        )
        session.add(Action(id=2, signature="no_contact"))

    def log(outcome: LoggedOutcome) -> None:
        contact = outcome.reason == DecisionReason.policy
        with session_scope(engine, write=True) as session:
            decision = DecisionLog(
                request_id=uuid.uuid4().hex,
                created_at=outcome.created_at,
                customer_id="c1",
                trigger_key="health_c_to_d",
                frame_key=outcome.frame_key,
                frame_version=1,
                reason=outcome.reason.value,
                chosen_action_id=(1 if outcome.offer_cost else 2) if contact else None,
                seed=1,
            )
            session.add(decision)
            session.flush()
            if outcome.rewarded:
                session.add(
                    Reward(
                        decision_id=decision.id,
                        window_closes_at=outcome.created_at + timedelta(days=14),
                        conversions=int(outcome.converted),
                        unsubscribed=outcome.unsubscribed,
                        complained=outcome.complained,
                    )
                )

    def add_version(info: FrameVersionInfo, frame: FrameSpec) -> None:
        with session_scope(engine, write=True) as session:
            session.add(
                DecisionFrame(
                    key=info.key,
                    name=info.name,
                    version=info.version,
                    status=info.status.value,
                    content_hash=f"{info.key}-{info.version}",
                    created_at=info.created_at,
                    approved_by=info.approved_by,
                    approved_at=info.approved_at,
                    spec=frame.model_dump(mode="json"),
                )
            )

    return Governance(SqlGovernanceStore(engine), SqlAuditLog(engine), log, add_version)


@pytest.fixture
def governance(store_engine: Engine | None) -> Governance:
    if store_engine is not None:
        return _sql(store_engine)
    memory = MemoryGovernanceStore()
    return Governance(memory, memory.audit, memory.log, memory.add_version)


def outcome(
    reason: DecisionReason,
    *,
    hours: float = 1,
    offer_cost: float | None = None,
    rewarded: bool = True,
    converted: bool = False,
    unsubscribed: bool = False,
    complained: bool = False,
) -> LoggedOutcome:
    """A decision `hours` after T0; a contact chooses the free month (9.99) unless `offer_cost`
    is 0 (then no offer: the SQL side logs an action without one)."""
    if offer_cost is None:
        offer_cost = 9.99 if reason == DecisionReason.policy else 0.0
    return LoggedOutcome(
        KEY,
        T0 + timedelta(hours=hours),
        reason,
        offer_cost=offer_cost,
        rewarded=rewarded,
        converted=converted,
        unsubscribed=unsubscribed,
        complained=complained,
    )


def test_a_state_and_its_audit_entry_are_stored_together(governance: Governance) -> None:
    store = governance.store
    assert store.states() == {}
    tripped = FrameState(
        frame_key=KEY,
        mode=SAFE,
        reason="unsubscribe rate 0.0800 above 0.0300",
        changed_at=T0,
        changed_by="guardrail monitor",
        metrics={"contacts": 900, "breaches": ["unsubscribe rate"]},
    )
    store.set_state(tripped)
    assert store.states() == {KEY: tripped}
    assert governance.audit.entries() == []

    resumed = FrameState(
        frame_key=KEY,
        mode="normal",
        reason="fixed",
        changed_at=T0 + timedelta(hours=1),
        changed_by="m",
    )
    entry = AuditEntry(actor="m", action="frame.resume", subject=KEY, at=resumed.changed_at)
    store.set_state(resumed, audit=entry)
    assert store.states() == {KEY: resumed}
    assert governance.audit.entries() == [entry]


def test_window_counts_see_rewarded_contacts_and_holdout_in_the_half_open_window(
    governance: Governance,
) -> None:
    policy, holdout = DecisionReason.policy, DecisionReason.holdout
    for logged in [
        outcome(policy, unsubscribed=True),
        outcome(policy, complained=True, converted=True),
        outcome(policy, converted=True),
        outcome(policy, rewarded=False, unsubscribed=True),
        outcome(holdout),
        outcome(holdout, converted=True),
        outcome(DecisionReason.policy_no_contact),
        outcome(policy, hours=0),
        outcome(policy, hours=24, unsubscribed=True),
        outcome(policy, hours=-1, unsubscribed=True),
    ]:
        governance.log(logged)
    governance.log(LoggedOutcome("upsell", T0 + timedelta(hours=1), policy, unsubscribed=True))

    counts = governance.store.window_counts(frame_key=KEY, since=T0, until=T0 + timedelta(days=1))

    assert counts == WindowCounts(
        contacts=4, unsubscribes=1, complaints=1, converted=2, holdout=2, holdout_converted=1
    )
    assert (
        governance.store.window_counts(frame_key="win_back", since=T0, until=T0 + timedelta(days=1))
        == WindowCounts()
    )


def test_window_spend_counts_every_policy_decision_and_the_offers_they_chose(
    governance: Governance,
) -> None:
    for logged in [
        outcome(DecisionReason.policy),
        outcome(DecisionReason.policy, rewarded=False),
        outcome(DecisionReason.policy, offer_cost=0.0),
        outcome(DecisionReason.policy_no_contact),
        outcome(DecisionReason.holdout),
        outcome(DecisionReason.nothing_eligible),
        outcome(DecisionReason.policy, hours=30),
    ]:
        governance.log(logged)

    spend = governance.store.window_spend(frame_key=KEY, since=T0, until=T0 + timedelta(days=1))

    assert spend.decisions == 4
    assert spend.offer_cost == pytest.approx(2 * 9.99)
    empty = governance.store.window_spend(frame_key=KEY, since=T0 - timedelta(days=2), until=T0)
    assert empty == WindowSpend()


def _version(
    version: int, status: FrameStatus, *, key: str = KEY, approved: bool = False
) -> FrameVersionInfo:
    return FrameVersionInfo(
        key=key,
        name=f"{key} v{version}",
        version=version,
        status=status,
        approved_by="m" if approved else None,
        approved_at=T0 if approved else None,
        created_at=T0 + timedelta(minutes=version),
    )


def test_versions_come_by_key_and_version(governance: Governance) -> None:
    for info in [
        _version(2, FrameStatus.draft),
        _version(1, FrameStatus.active, key="win_back", approved=True),
        _version(1, FrameStatus.active, approved=True),
    ]:
        governance.add_version(info, spec())
    listed = governance.store.versions()
    assert [(v.key, v.version) for v in listed] == [(KEY, 1), (KEY, 2), ("win_back", 1)]
    assert listed[0] == _version(1, FrameStatus.active, approved=True)
    assert [v.version for v in governance.store.versions(key=KEY)] == [1, 2]
    assert governance.store.versions(key="nothing") == []


def test_approving_a_draft_activates_it_retires_the_active_one_and_is_audited(
    governance: Governance,
) -> None:
    governance.add_version(_version(1, FrameStatus.active, approved=True), spec())
    governance.add_version(_version(2, FrameStatus.draft), spec(max_offer_cost=12.0))
    at = T0 + timedelta(days=1)

    approved = governance.store.approve(key=KEY, version=2, approver="m.keller", now=at)

    assert (approved.version, approved.status) == (2, FrameStatus.active)
    assert (approved.approved_by, approved.approved_at) == ("m.keller", at)
    assert [v.status for v in governance.store.versions(key=KEY)] == [
        FrameStatus.retired,
        FrameStatus.active,
    ]
    (entry,) = governance.audit.entries(action="frame.approve")
    assert (entry.actor, entry.subject, entry.at) == ("m.keller", f"{KEY} v2", at)
    assert entry.details is not None
    assert entry.details["via"] == "api"
    widens = frame_widenings(spec(), spec(max_offer_cost=12.0))
    assert widens
    assert entry.details["widens"] == widens


def test_only_a_current_draft_can_be_approved(governance: Governance) -> None:
    governance.add_version(_version(1, FrameStatus.draft), spec())
    governance.add_version(_version(2, FrameStatus.active, approved=True), spec())
    governance.add_version(_version(3, FrameStatus.draft), spec())
    with pytest.raises(LookupError, match="no version 9"):
        governance.store.approve(key=KEY, version=9, approver="m", now=T0)
    with pytest.raises(ValueError, match="only a draft"):
        governance.store.approve(key=KEY, version=2, approver="m", now=T0)
    with pytest.raises(ValueError, match="older than the serving v2"):
        governance.store.approve(key=KEY, version=1, approver="m", now=T0)
    assert [v.status for v in governance.store.versions(key=KEY)] == [
        FrameStatus.draft,
        FrameStatus.active,
        FrameStatus.draft,
    ]
    assert governance.audit.entries() == []
