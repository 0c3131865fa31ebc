"""Eligibility, send times, contact policy and holdout: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.catalog import (
    CatalogSnapshot,
    CatalogSpec,
    ContactPolicySpec,
    FrameVersion,
    Limit,
    QuietHours,
    SendTimeSpec,
    action_signature,
    frame_actions,
)
from optimizer.core.decision import CustomerState, PastContact
from optimizer.core.values import ChannelKind
from optimizer.eligibility import (
    NoContactCandidate,
    build_candidates,
    choose_frame,
    contact_policy_violation,
    holdout_bucket,
    in_holdout,
    is_quiet,
    send_at,
)

BERLIN = ZoneInfo("Europe/Berlin")


def snapshot_of(catalog: CatalogSpec) -> CatalogSnapshot:
    """The serving snapshot of a catalog, as if loaded and every frame approved."""
    signatures = {"no_contact"}
    for frame in catalog.frames:
        signatures |= {action_signature(*c) for c in frame_actions(frame, catalog.texts)}
    return CatalogSnapshot(
        revision=1,
        triggers={t.key: t for t in catalog.triggers},
        channels={c.key: c for c in catalog.channels},
        send_times={s.key: s for s in catalog.send_times},
        offers={o.key: o for o in catalog.offers},
        texts={t.key: t for t in catalog.texts},
        frames=tuple(
            FrameVersion(
                id=i + 1,
                key=f.key,
                version=1,
                status="active",
                spec=f,
                approved_by="t",
                approved_at=None,
            )
            for i, f in enumerate(catalog.frames)
        ),
        actions={sig: i + 1 for i, sig in enumerate(sorted(signatures))},
    )


@pytest.fixture(scope="module")
def snapshot(example_catalog: CatalogSpec) -> CatalogSnapshot:
    return snapshot_of(example_catalog)


def customer(**overrides: object) -> CustomerState:
    values: dict[str, object] = {
        "id": "c-1",
        "health_class": "D",
        "usage_index": 0.1,
        "tenure_days": 400.0,
        "time_zone": "Europe/Berlin",
        "language": "en",
        "attributes": {},
        "consented_channels": frozenset({"email", "sms", "app_push", "app_inbox", "letter"}),
    }
    values.update(overrides)
    return CustomerState(**values)  # type: ignore[arg-type]


MONDAY_MORNING = datetime(2026, 11, 23, 10, 15, tzinfo=BERLIN)
ALL_CHANNELS = ["email", "sms", "app_push", "letter", "web_portal", "app_inbox"]


def test_quiet_hours_wrap_midnight() -> None:
    quiet = QuietHours(start="21:00", end="08:00")
    assert is_quiet(datetime(2026, 1, 1, 22, 0, tzinfo=BERLIN), quiet)
    assert is_quiet(datetime(2026, 1, 1, 7, 59, tzinfo=BERLIN), quiet)
    assert not is_quiet(datetime(2026, 1, 1, 8, 0, tzinfo=BERLIN), quiet)
    assert not is_quiet(datetime(2026, 1, 1, 20, 59, tzinfo=BERLIN), quiet)


def test_slot_send_time_is_the_next_window_on_an_allowed_weekday() -> None:
    slot = SendTimeSpec(
        key="late", name="x", kind="slot", weekdays=[0, 1, 2, 3, 4], start="16:00", end="18:30"
    )
    saturday_noon = datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN)
    assert send_at(slot, now_local=saturday_noon, quiet=None) == datetime(
        2026, 11, 30, 16, 0, tzinfo=BERLIN
    )
    inside = datetime(2026, 11, 30, 17, 0, tzinfo=BERLIN)
    assert send_at(slot, now_local=inside, quiet=None) == inside


def test_send_time_moves_out_of_quiet_hours_or_gives_up() -> None:
    evening = SendTimeSpec(
        key="ev", name="x", kind="slot", weekdays=list(range(7)), start="19:00", end="22:00"
    )
    quiet = QuietHours(start="21:00", end="08:00")
    late = datetime(2026, 11, 23, 21, 30, tzinfo=BERLIN)
    assert send_at(evening, now_local=late, quiet=quiet) == datetime(
        2026, 11, 24, 19, 0, tzinfo=BERLIN
    )
    immediate = SendTimeSpec(key="now", name="x", kind="immediate")
    assert send_at(immediate, now_local=late, quiet=quiet) is None
    assert send_at(immediate, now_local=late, quiet=None) == late


def test_occasion_is_only_eligible_near_its_dates() -> None:
    christmas = SendTimeSpec(
        key="xmas",
        name="x",
        kind="occasion",
        occasion_start="12-20",
        occasion_end="12-27",
        start="10:00",
        end="19:00",
    )
    assert (
        send_at(christmas, now_local=datetime(2026, 11, 23, 12, tzinfo=BERLIN), quiet=None) is None
    )
    assert send_at(
        christmas, now_local=datetime(2026, 12, 18, 12, tzinfo=BERLIN), quiet=None
    ) == datetime(2026, 12, 20, 10, tzinfo=BERLIN)
    new_year = SendTimeSpec(
        key="ny",
        name="x",
        kind="occasion",
        occasion_start="12-30",
        occasion_end="01-02",
        start="10:00",
        end="19:00",
    )
    assert send_at(
        new_year, now_local=datetime(2027, 1, 1, 9, tzinfo=BERLIN), quiet=None
    ) == datetime(2027, 1, 1, 10, tzinfo=BERLIN)


def test_channel_cap_counts_contacts_on_both_sides_of_the_send_time() -> None:
    policy = ContactPolicySpec(
        once_per_customer_days=1, channel_limits={"email": Limit(max=2, days=7)}, min_gap_hours=0
    )
    t = datetime(2026, 11, 23, 12, tzinfo=UTC)
    history = [
        PastContact("other", "email", t - timedelta(days=6)),
        PastContact("other2", "email", t + timedelta(days=3)),
    ]
    reason = contact_policy_violation(
        policy, frame_key="f", channel="email", moment=t, history=history
    )
    assert reason is not None
    assert "channel cap" in reason
    assert (
        contact_policy_violation(
            policy, frame_key="f", channel="email", moment=t, history=history[:1]
        )
        is None
    )


def test_campaign_once_min_gap_and_fatigue_cap() -> None:
    policy = ContactPolicySpec(
        once_per_customer_days=30, min_gap_hours=24, fatigue_cap=Limit(max=2, days=30)
    )
    t = datetime(2026, 11, 23, 12, tzinfo=UTC)
    same_campaign = [PastContact("f", "sms", t - timedelta(days=20))]
    assert "campaign" in str(
        contact_policy_violation(
            policy, frame_key="f", channel="email", moment=t, history=same_campaign
        )
    )
    close = [PastContact("g", "sms", t - timedelta(hours=5))]
    assert "hours" in str(
        contact_policy_violation(policy, frame_key="f", channel="email", moment=t, history=close)
    )
    tired = [
        PastContact("g", "sms", t - timedelta(days=10)),
        PastContact("h", "sms", t - timedelta(days=20)),
    ]
    assert "fatigue" in str(
        contact_policy_violation(policy, frame_key="f", channel="email", moment=t, history=tired)
    )


def test_holdout_is_stable_and_close_to_its_share() -> None:
    assert holdout_bucket("c-17", "churn") == holdout_bucket("c-17", "churn")
    assert holdout_bucket("c-17", "churn") != holdout_bucket("c-17", "upsell")
    members = sum(in_holdout(f"c-{i}", salt="churn", share=0.1) for i in range(20_000))
    assert 0.09 < members / 20_000 < 0.11


def test_frame_is_chosen_by_priority_and_health_class(snapshot: CatalogSnapshot) -> None:
    frame, _ = choose_frame(
        snapshot, trigger="inactive_14d", customer=customer(health_class="C"), now=MONDAY_MORNING
    )
    assert frame is not None
    assert frame.key == "reactivation"
    frame, trace = choose_frame(
        snapshot, trigger="category_binge", customer=customer(health_class="D"), now=MONDAY_MORNING
    )
    assert frame is None
    assert "serves health classes AB" in trace["frame:upsell"]


def test_candidates_respect_consent_class_language_and_trace_why(snapshot: CatalogSnapshot) -> None:
    frame, _ = choose_frame(
        snapshot, trigger="health_c_to_d", customer=customer(), now=MONDAY_MORNING
    )
    assert frame is not None
    state = customer(consented_channels=frozenset({"email", "app_push"}))
    result = build_candidates(
        snapshot, frame=frame, customer=state, history=[], channels=ALL_CHANNELS, now=MONDAY_MORNING
    )
    contacts = result.contacts
    assert contacts
    assert {c.channel for c in contacts} <= {"email", "app_push"}
    assert all(snapshot.texts[c.text].language == "en" for c in contacts)
    assert {c.offer for c in contacts} <= set(frame.spec.offers_by_health_class()["D"])
    assert result.trace["channel:sms"] == "no consent"
    assert result.trace["offer:usage_tip"] == "not allowed for health class D"
    assert isinstance(result.candidates[-1], NoContactCandidate)  # the frame allows no_contact


@given(
    hours=st.integers(min_value=0, max_value=24 * 14),
    minutes=st.integers(min_value=0, max_value=59),
    consents=st.sets(st.sampled_from(ALL_CHANNELS)),
    deliverable=st.sets(st.sampled_from(ALL_CHANNELS), min_size=1),
    past=st.lists(
        st.tuples(
            st.sampled_from(["churn_prevention", "upsell", "reactivation"]),
            st.sampled_from(ALL_CHANNELS),
            st.integers(min_value=-24 * 40, max_value=24 * 7),
        ),
        max_size=6,
    ),
    time_zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
    health=st.sampled_from(["C", "D"]),
)
@settings(max_examples=150, deadline=None)
def test_no_candidate_breaks_consent_quiet_hours_frame_or_caps(
    snapshot: CatalogSnapshot,
    hours: int,
    minutes: int,
    consents: set[str],
    deliverable: set[str],
    past: list[tuple[str, str, int]],
    time_zone: str,
    health: str,
) -> None:
    now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC) + timedelta(hours=hours, minutes=minutes)
    history = [PastContact(f, c, now + timedelta(hours=h)) for f, c, h in past]
    state = customer(
        consented_channels=frozenset(consents), time_zone=time_zone, health_class=health
    )
    frame, _ = choose_frame(snapshot, trigger="health_c_to_d", customer=state, now=now)
    assert frame is not None
    spec = frame.spec
    result = build_candidates(
        snapshot, frame=frame, customer=state, history=history, channels=deliverable, now=now
    )
    for c in result.contacts:
        assert c.channel in consents
        assert c.channel in deliverable
        assert c.channel in spec.channels
        assert c.offer in spec.offers_by_health_class()[health]
        assert snapshot.offers[c.offer].cost <= spec.max_offer_cost
        assert c.send_time in spec.send_times
        assert c.send_at is not None
        assert c.send_at >= now - timedelta(seconds=1)
        local = c.send_at.astimezone(ZoneInfo(time_zone))
        if snapshot.channels[c.channel].kind is ChannelKind.push:
            assert not is_quiet(local, spec.contact_policy.quiet_hours)
        assert (
            contact_policy_violation(
                spec.contact_policy,
                frame_key=frame.key,
                channel=c.channel,
                moment=c.send_at,
                history=history,  # type: ignore[arg-type]
            )
            is None
        )
