"""Feedback and rewards as use cases over the in-memory stores: no database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from optimizer.core.values import new_id
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.feedback import (
    ConversionReport,
    EventKeyConflictError,
    EventReport,
    record_conversion,
    record_conversions,
    record_event,
    record_events,
    record_reward,
)
from optimizer.memory.feedback import MemoryFeedbackStore
from optimizer.memory.rewards import MemoryRewardStore
from optimizer.ports.feedback import ConversionStatus, ConversionWrite, EventWrite
from optimizer.ports.rewards import RewardTerms
from optimizer.rewards import finalize_due

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
WINDOW = timedelta(days=7)
FRAME = ("churn", 1)


@pytest.fixture
def store() -> MemoryFeedbackStore:
    store = MemoryFeedbackStore()
    store.add_frame(key="churn", version=1, terms=RewardTerms("binary", (0.0, 1.0)))
    store.add_frame(key="upsell", version=1, terms=RewardTerms("value_minus_cost", (-10.0, 50.0)))
    return store


def contact(
    store: MemoryFeedbackStore,
    customer: str = "c1",
    *,
    at: datetime = T0,
    frame: tuple[str, int] = FRAME,
    offer_cost: float = 0.0,
) -> uuid.UUID:
    decision_id = new_id()
    store.add_decision(
        decision_id=decision_id,
        customer_id=customer,
        touched_at=at,
        window_closes_at=at + WINDOW,
        frame=frame,
        channel="email",
        offer_cost=offer_cost,
    )
    return decision_id


def bought(
    conversion_id: str, *, at: datetime, customer: str = "c1", value: float = 5.0
) -> ConversionReport:
    return ConversionReport(
        conversion_id=conversion_id, customer_id=customer, kind="stay", value=value, occurred_at=at
    )


# --- delivery events ---------------------------------------------------------------------------


def test_a_repeated_event_key_changes_nothing_and_gets_the_first_answer(
    store: MemoryFeedbackStore,
) -> None:
    decision_id = contact(store)
    event = EventReport(kind="opened", event_id="e-1")
    first = record_event(store, decision_id=decision_id, event=event, now=T0)
    again = record_event(store, decision_id=decision_id, event=event, now=T0 + timedelta(hours=1))
    assert (first.duplicate, again.duplicate) == (False, True)
    assert store.event_count(decision_id) == 1
    assert store.contact_status(decision_id) == "delivered"
    assert store.reward(decision_id).sent


def test_a_repeat_within_one_batch_is_a_duplicate(store: MemoryFeedbackStore) -> None:
    decision_id = contact(store)
    event = EventReport(kind="sent", event_id="e-1")
    results = record_events(store, events=[(decision_id, event), (decision_id, event)], now=T0)
    assert [r.duplicate for r in results] == [False, True]
    assert store.event_count(decision_id) == 1


def test_a_key_reused_for_another_event_is_a_conflict_and_records_nothing(
    store: MemoryFeedbackStore,
) -> None:
    decision_id, other = contact(store), contact(store)
    record_event(store, decision_id=decision_id, event=EventReport("sent", event_id="k"), now=T0)
    with pytest.raises(EventKeyConflictError):
        record_events(
            store,
            events=[
                (other, EventReport("sent")),
                (decision_id, EventReport("bounced", event_id="k")),
            ],
            now=T0,
        )
    assert store.event_count(other) == 0
    assert store.contact_status(decision_id) == "sent"


def test_a_reused_key_still_revokes_consent_on_unsubscribe(store: MemoryFeedbackStore) -> None:
    first, second = contact(store, "c1"), contact(store, "c2")
    record_event(store, decision_id=first, event=EventReport("unsubscribed", event_id="u"), now=T0)
    with pytest.raises(EventKeyConflictError, match="revoked all the same"):
        record_event(
            store, decision_id=second, event=EventReport("unsubscribed", event_id="u"), now=T0
        )
    assert store.consent("c2", "email") is False
    assert not store.reward(second).unsubscribed
    revocations = store.audit.entries(action="consent.revoke")
    assert [e.subject for e in revocations] == ["c2/email", "c1/email"]


def test_a_time_given_only_once_is_the_same_event(store: MemoryFeedbackStore) -> None:
    decision_id = contact(store)
    record_event(store, decision_id=decision_id, event=EventReport("sent", event_id="s"), now=T0)
    later = EventReport("sent", occurred_at=T0 - timedelta(minutes=5), event_id="s")
    assert record_event(store, decision_id=decision_id, event=later, now=T0).duplicate
    timed = EventReport("opened", occurred_at=T0, event_id="o")
    record_event(store, decision_id=decision_id, event=timed, now=T0 + timedelta(minutes=1))
    moved = EventReport("opened", occurred_at=T0 + timedelta(seconds=1), event_id="o")
    with pytest.raises(EventKeyConflictError, match="the same event at"):
        record_event(store, decision_id=decision_id, event=moved, now=T0)


def test_events_need_a_contact_decision(store: MemoryFeedbackStore) -> None:
    with pytest.raises(NotFoundError):
        record_event(store, decision_id=new_id(), event=EventReport("sent"), now=T0)
    no_contact = new_id()
    store.add_decision(
        decision_id=no_contact, customer_id="c1", touched_at=T0, window_closes_at=None
    )
    with pytest.raises(InvalidInputError):
        record_event(store, decision_id=no_contact, event=EventReport("sent"), now=T0)


def test_a_failure_frees_the_contact_and_later_sends_do_not_undo_it(
    store: MemoryFeedbackStore,
) -> None:
    decision_id = contact(store)
    record_events(
        store,
        events=[(decision_id, EventReport("bounced")), (decision_id, EventReport("delivered"))],
        now=T0,
    )
    assert store.contact_status(decision_id) == "failed"
    assert store.reward(decision_id).failed


class RacingStore(MemoryFeedbackStore):
    """A store where another request stores the same keys just before each first write."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def record_events(self, writes: Sequence[EventWrite]) -> None:
        if not self.raced:
            self.raced = True
            super().record_events(writes)
        super().record_events(writes)

    def record_conversions(self, writes: Sequence[ConversionWrite]) -> list[ConversionStatus]:
        if not self.raced:
            self.raced = True
            super().record_conversions(writes)
        return super().record_conversions(writes)


def test_a_key_taken_concurrently_is_read_again_and_answered_as_a_duplicate() -> None:
    store = RacingStore()
    decision_id = contact(store)
    event = EventReport("opened", event_id="race")
    assert record_event(store, decision_id=decision_id, event=event, now=T0).duplicate
    assert store.event_count(decision_id) == 1
    store.raced = False
    answer = record_conversion(store, conversion=bought("race", at=T0 + timedelta(hours=1)))
    assert (answer.duplicate, answer.status, answer.decision_id) == (
        True,
        "attributed",
        decision_id,
    )
    assert store.reward(decision_id).conversions == 1


# --- conversions -------------------------------------------------------------------------------


def test_a_conversion_goes_to_the_last_touch_inside_its_window(store: MemoryFeedbackStore) -> None:
    early = contact(store, at=T0)
    late = contact(store, at=T0 + timedelta(days=2))
    contact(store, "c2", at=T0 + timedelta(days=3))
    before, after = record_conversions(
        store,
        conversions=[
            bought("x", at=T0 + timedelta(days=1)),
            bought("y", at=T0 + timedelta(days=4)),
        ],
        now=T0 + timedelta(days=5),
    )
    assert (before.status, before.decision_id) == ("attributed", early)
    assert (after.status, after.decision_id) == ("attributed", late)
    assert record_conversion(store, conversion=bought("z", at=T0 + timedelta(days=20))).status == (
        "unattributed"
    )


def test_a_conversion_after_the_window_closed_is_kept_as_late(store: MemoryFeedbackStore) -> None:
    decision_id = contact(store)
    record_event(store, decision_id=decision_id, event=EventReport("sent"), now=T0)
    finalize_due(MemoryRewardStore(store), now=T0 + WINDOW)
    result = record_conversion(store, conversion=bought("late", at=T0 + timedelta(days=1)))
    assert (result.status, result.decision_id) == ("late", decision_id)
    reward = store.reward(decision_id)
    assert (reward.conversions, reward.late_conversions, reward.value) == (0, 1, 0.0)
    again = record_conversion(store, conversion=bought("late", at=T0 + timedelta(days=1)))
    assert (again.status, again.duplicate) == ("late", True)


def test_a_conversion_id_reused_for_another_conversion_is_a_conflict(
    store: MemoryFeedbackStore,
) -> None:
    contact(store)
    record_conversion(store, conversion=bought("c", at=T0 + timedelta(hours=1)))
    with pytest.raises(ConflictError, match="another value"):
        record_conversion(store, conversion=bought("c", at=T0 + timedelta(hours=1), value=9.0))
    with pytest.raises(ConflictError, match="another customer_id"):
        record_conversions(
            store,
            conversions=[
                bought("new", at=T0 + timedelta(hours=1), customer="c9"),
                bought("new", at=T0 + timedelta(hours=1), customer="c8"),
            ],
        )
    assert store.stored_conversions(["new"]) == {}


def test_an_erased_customers_conversion_is_kept_under_the_pseudonym(
    store: MemoryFeedbackStore,
) -> None:
    decision_id = contact(store, "person")
    store.erase_customer(customer_id="person", salt="s")
    first = record_conversion(
        store,
        conversion=bought("g", at=T0 + timedelta(hours=1), customer="person"),
        pseudonym_salt="s",
    )
    assert (first.status, first.decision_id) == ("attributed", decision_id)
    stored = store.stored_conversions(["g"])["g"]
    assert stored.customer_id == store.pseudonym("person", "s")
    again = record_conversion(
        store,
        conversion=bought("g", at=T0 + timedelta(hours=1), customer="person"),
        pseudonym_salt="s",
    )
    assert again.duplicate
    unsalted = record_conversion(
        store, conversion=bought("h", at=T0 + timedelta(hours=1), customer="person")
    )
    assert unsalted.status == "unattributed"


# --- direct rewards and closing windows --------------------------------------------------------


def test_a_direct_reward_must_fit_the_frame_and_the_open_window(
    store: MemoryFeedbackStore,
) -> None:
    decision_id = contact(store)
    record_event(store, decision_id=decision_id, event=EventReport("sent"), now=T0)
    with pytest.raises(InvalidInputError, match=r"outside the frame's range \[0, 1\]"):
        record_reward(store, decision_id=decision_id, value=2.0)
    assert record_reward(store, decision_id=decision_id, value=0.25).status == "pending"
    finalize_due(MemoryRewardStore(store), now=T0 + WINDOW)
    assert store.reward(decision_id).value == 0.25
    with pytest.raises(ConflictError, match="already final"):
        record_reward(store, decision_id=decision_id, value=0.5)
    with pytest.raises(NotFoundError):
        record_reward(store, decision_id=new_id(), value=0.5)


def test_windows_close_only_when_due_and_unsent_contacts_are_void(
    store: MemoryFeedbackStore,
) -> None:
    rewards = MemoryRewardStore(store)
    sent, unsent, converted = contact(store, "c1"), contact(store, "c2"), contact(store, "c3")
    upsell = contact(store, "c4", frame=("upsell", 1), offer_cost=4.0)
    later = contact(store, "c5", at=T0 + timedelta(days=3))
    record_events(
        store,
        events=[(d, EventReport("sent")) for d in (sent, converted, upsell, later)],
        now=T0,
    )
    record_conversions(
        store,
        conversions=[
            bought(f"by-{customer}", at=T0 + timedelta(hours=1), customer=customer, value=30.0)
            for customer in ("c3", "c4")
        ],
        now=T0 + timedelta(hours=1),
    )
    assert finalize_due(rewards, now=T0 + WINDOW - timedelta(seconds=1)).total == 0
    report = finalize_due(rewards, now=T0 + WINDOW)
    assert (report.final, report.void, report.converted) == (3, 1, 2)
    assert store.reward(unsent).status == "void"
    values = [store.reward(d).value for d in (sent, converted, upsell)]
    assert values == [0.0, 1.0, 26.0]  # binary, binary, value minus the offer's cost
    assert store.reward(later).status == "pending"
    assert finalize_due(rewards, now=T0 + WINDOW).total == 0


def test_the_reward_sequence_rises_across_runs_in_window_order(store: MemoryFeedbackStore) -> None:
    rewards = MemoryRewardStore(store)
    decisions = [contact(store, at=T0 + timedelta(hours=h)) for h in (5, 1, 3, 30, 2)]
    record_events(store, events=[(d, EventReport("sent")) for d in decisions], now=T0)
    finalize_due(rewards, now=T0 + WINDOW + timedelta(hours=4), limit=2)
    finalize_due(rewards, now=T0 + WINDOW + timedelta(days=3))
    by_window = sorted(decisions, key=lambda d: store.reward(d).window_closes_at)
    sequences = [store.reward(d).sequence for d in by_window]
    assert sequences == sorted(sequences)
    assert sequences == [1, 2, 3, 4, 5]
