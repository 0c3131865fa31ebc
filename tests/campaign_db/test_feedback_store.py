"""The feedback and reward stores behave alike in memory and on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from optimizer.core.catalog import HarmSpec
from optimizer.core.values import new_id
from optimizer.ports.audit import AuditEntry
from optimizer.ports.feedback import (
    ConsentRevocation,
    ConversionWrite,
    EventWrite,
    KeyTakenError,
)
from optimizer.ports.rewards import ClosedReward, RewardTerms
from optimizer.rewards import finalize_due
from tests.campaign_db.feedback_world import World, world_on

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
WINDOW = timedelta(days=7)


@pytest.fixture
def world(store_engine: Engine | None) -> World:
    return world_on(store_engine)


def contact(world: World, customer: str = "c1", *, at: datetime = T0, **kw: object) -> uuid.UUID:
    decision_id = new_id()
    world.add_decision(
        decision_id=decision_id,
        customer_id=customer,
        touched_at=at,
        window_closes_at=at + WINDOW,
        channel="email",
        **kw,  # type: ignore[arg-type]
    )
    return decision_id


def event(decision_id: uuid.UUID, kind: str, key: str | None = None, **kw: object) -> EventWrite:
    return EventWrite(
        id=new_id(),
        decision_id=decision_id,
        kind=kind,
        occurred_at=T0,
        received_at=T0,
        event_key=key,
        **kw,  # type: ignore[arg-type]
    )


def conversion(
    conversion_id: str, decision_id: uuid.UUID | None, value: float = 2.0, customer: str = "c1"
) -> ConversionWrite:
    return ConversionWrite(
        conversion_id=conversion_id,
        customer_id=customer,
        kind="stay",
        value=value,
        occurred_at=T0 + timedelta(days=1),
        received_at=T0 + timedelta(days=1),
        decision_id=decision_id,
    )


def test_outcomes_are_read_for_existing_decisions_only(world: World) -> None:
    decision_id = contact(world, frame=("churn", 2))
    missing = new_id()
    outcomes = world.store.decision_outcomes([decision_id, missing])
    assert set(outcomes) == {decision_id}
    outcome = outcomes[decision_id]
    assert (outcome.customer_id, outcome.reason, outcome.channel) == ("c1", "policy", "email")
    assert (outcome.frame_key, outcome.frame_version, outcome.reward_status) == (
        "churn",
        2,
        "pending",
    )


def test_an_event_applies_its_flags_contact_status_and_revocation_together(world: World) -> None:
    sent, gone = contact(world), contact(world)
    audit = AuditEntry(actor="channel system", action="consent.revoke", subject="c1/email", at=T0)
    world.store.record_events(
        [
            event(sent, "delivered", "k-1", flags=frozenset({"sent"}), contact_status="delivered"),
            event(
                gone,
                "unsubscribed",
                flags=frozenset({"unsubscribed"}),
                revocation=ConsentRevocation("c1", "email", "unsubscribed", T0, audit),
            ),
        ]
    )
    first, second = world.reward(sent), world.reward(gone)
    assert (first.sent, first.unsubscribed, second.sent, second.unsubscribed) == (
        True,
        False,
        False,
        True,
    )
    assert world.contact_status(sent) == "delivered"
    assert world.contact_status(gone) == "reserved"
    assert world.consent("c1", "email") is False
    stored = world.store.stored_events(["k-1", "k-unknown"])
    assert set(stored) == {"k-1"}
    assert (stored["k-1"].decision_id, stored["k-1"].kind) == (sent, "delivered")


def test_a_failed_contact_stays_failed(world: World) -> None:
    decision_id = contact(world)
    world.store.record_events([event(decision_id, "bounced", contact_status="failed")])
    world.store.record_events([event(decision_id, "opened", contact_status="delivered")])
    assert world.contact_status(decision_id) == "failed"


def test_a_taken_event_key_writes_nothing_of_the_batch(world: World) -> None:
    decision_id = contact(world)
    world.store.record_events([event(decision_id, "sent", "taken")])
    with pytest.raises(KeyTakenError):
        world.store.record_events(
            [
                event(decision_id, "failed", "fresh", flags=frozenset({"failed"})),
                event(decision_id, "opened", "taken"),
            ]
        )
    assert world.event_count(decision_id) == 1
    assert world.store.stored_events(["fresh"]) == {}
    reward = world.reward(decision_id)
    assert reward.failed is False


def test_last_touch_is_the_latest_touch_whose_window_holds_the_time(world: World) -> None:
    early = contact(world, at=T0)
    late = contact(world, at=T0 + timedelta(days=2))
    contact(world, "someone-else", at=T0 + timedelta(days=3))
    touch = world.store.last_touch
    assert touch(customer_id="c1", occurred_at=T0 + timedelta(days=1)) == early
    assert touch(customer_id="c1", occurred_at=T0 + timedelta(days=3)) == late
    assert touch(customer_id="c1", occurred_at=T0 - timedelta(hours=1)) is None
    assert touch(customer_id="c1", occurred_at=T0 + timedelta(days=10)) is None


def test_a_conversion_counts_while_its_reward_is_pending_and_is_late_after(world: World) -> None:
    decision_id = contact(world)
    assert world.store.record_conversions(
        [conversion("a", decision_id), conversion("u", None)]
    ) == ["attributed", "unattributed"]
    world.rewards.close_rewards(closed=[ClosedReward(decision_id, 1.0)], now=T0 + WINDOW)
    assert world.store.record_conversions([conversion("b", decision_id, 3.0)]) == ["late"]
    reward = world.reward(decision_id)
    assert reward is not None
    assert (reward.conversions, reward.conversion_value, reward.late_conversions) == (1, 2.0, 1)
    stored = world.store.stored_conversions(["a", "b", "u", "nope"])
    assert {k: v.status for k, v in stored.items()} == {
        "a": "attributed",
        "b": "late",
        "u": "unattributed",
    }
    assert (stored["b"].decision_id, stored["b"].value, stored["b"].kind) == (
        decision_id,
        3.0,
        "stay",
    )


def test_a_taken_conversion_id_writes_nothing_of_the_batch(world: World) -> None:
    decision_id = contact(world)
    world.store.record_conversions([conversion("a", decision_id)])
    with pytest.raises(KeyTakenError):
        world.store.record_conversions([conversion("fresh", decision_id), conversion("a", None)])
    assert world.store.stored_conversions(["fresh"]) == {}
    reward = world.reward(decision_id)
    assert reward.conversions == 1


def test_due_rewards_come_oldest_first_with_their_terms_and_offer_cost(world: World) -> None:
    world.add_frame(key="churn", version=1, terms=RewardTerms("value_minus_cost", (-5.0, 50.0)))
    newer = contact(world, at=T0 + timedelta(days=1), frame=("churn", 1))
    older = contact(world, at=T0, frame=("churn", 1), offer_cost=4.0)
    unknown_frame = contact(world, at=T0 + timedelta(days=2), frame=("gone", 3))
    contact(world, at=T0 + timedelta(days=30))  # window still open
    due = world.rewards.due_rewards(now=T0 + timedelta(days=10), limit=10)
    assert [r.decision_id for r in due] == [older, newer, unknown_frame]
    assert [r.offer_cost for r in due] == [4.0, 0.0, 0.0]
    assert due[0].terms == RewardTerms("value_minus_cost", (-5.0, 50.0))
    assert due[2].terms is None
    assert [r.decision_id for r in world.rewards.due_rewards(now=T0 + WINDOW * 2, limit=1)] == [
        older
    ]


def test_a_closing_reward_loses_the_frames_harm_costs_for_what_its_contact_did(
    world: World,
) -> None:
    harm = HarmSpec(unsubscribe=3.0, complaint=5.0, contact=0.1)
    world.add_frame(key="churn", version=1, terms=RewardTerms("binary", (-8.1, 1.0), harm))
    quiet, gone, angry = (contact(world, frame=("churn", 1)) for _ in range(3))
    world.store.record_events(
        [event(d, "sent", flags=frozenset({"sent"})) for d in (quiet, gone, angry)]
        + [
            event(gone, "unsubscribed", flags=frozenset({"unsubscribed"})),
            event(angry, "complained", flags=frozenset({"complained"})),
        ]
    )
    world.store.record_conversions([conversion("x", gone)])
    due = {r.decision_id: r for r in world.rewards.due_rewards(now=T0 + WINDOW, limit=10)}
    assert due[gone].terms == RewardTerms("binary", (-8.1, 1.0), harm)
    assert [(due[d].unsubscribed, due[d].complained) for d in (quiet, gone, angry)] == [
        (False, False),
        (True, False),
        (False, True),
    ]
    finalize_due(world.rewards, now=T0 + WINDOW)
    values = [world.reward(d).value for d in (quiet, gone, angry)]
    assert values == pytest.approx([-0.1, 1.0 - 0.1 - 3.0, -0.1 - 5.0])


def test_closing_numbers_final_rewards_in_order_after_the_last_number(world: World) -> None:
    first, second, void, third = (contact(world, at=T0 + timedelta(hours=i)) for i in range(4))
    world.rewards.close_rewards(closed=[ClosedReward(first, 1.0)], now=T0 + WINDOW)
    world.rewards.close_rewards(
        closed=[ClosedReward(third, 0.0), ClosedReward(void, None), ClosedReward(second, 1.0)],
        now=T0 + WINDOW * 2,
    )
    rewards = {d: world.reward(d) for d in (first, second, void, third)}
    assert {d: (r.status, r.sequence) for d, r in rewards.items()} == {
        first: ("final", 1),
        third: ("final", 2),
        void: ("void", None),
        second: ("final", 3),
    }
    assert rewards[third].value == 0.0
    assert world.rewards.due_rewards(now=T0 + WINDOW * 3, limit=10) == []


def test_a_closed_reward_is_not_closed_again(world: World) -> None:
    decision_id = contact(world)
    world.rewards.close_rewards(closed=[ClosedReward(decision_id, 1.0)], now=T0 + WINDOW)
    world.rewards.close_rewards(closed=[ClosedReward(decision_id, 0.0)], now=T0 + WINDOW * 2)
    reward = world.reward(decision_id)
    assert (reward.value, reward.sequence) == (1.0, 1)


def test_a_direct_reward_is_set_only_while_pending(world: World) -> None:
    world.add_frame(key="churn", version=1, terms=RewardTerms("binary", (0.0, 1.0)))
    decision_id = contact(world, frame=("churn", 1))
    assert world.store.reward_terms(frame_key="churn", frame_version=1) == RewardTerms(
        "binary", (0.0, 1.0)
    )
    assert world.store.reward_terms(frame_key="churn", frame_version=2) is None
    assert world.store.set_direct_reward(decision_id=decision_id, value=0.5) is True
    world.rewards.close_rewards(closed=[ClosedReward(decision_id, 0.5)], now=T0 + WINDOW)
    assert world.store.set_direct_reward(decision_id=decision_id, value=1.0) is False
    reward = world.reward(decision_id)
    assert reward.direct_value == 0.5


def test_an_erased_customer_is_known_by_the_pseudonym(
    world: World,
) -> None:
    decision_id = contact(world, "person")
    world.store.record_conversions([conversion("before", decision_id, customer="person")])
    assert world.store.erased_alias(customer_id="person", salt="s") is None
    world.erase_customer(customer_id="person", salt="s")
    alias = world.store.erased_alias(customer_id="person", salt="s")
    assert alias == world.store.pseudonym("person", "s") != "person"
    assert world.store.stored_conversions(["before"])["before"].customer_id == alias
    assert world.store.last_touch(customer_id=alias, occurred_at=T0 + timedelta(days=1)) == (
        decision_id
    )
    assert world.store.decision_outcomes([decision_id])[decision_id].customer_id == alias
    assert world.store.erased_alias(customer_id="someone", salt="s") is None
