"""Usage, health classes, trigger emission and the outbox, on the in-memory stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import customers, outbound
from optimizer.core.values import HealthClass
from optimizer.errors import NotFoundError
from optimizer.health import UsageIn, UsageIndexConfig, health_class, usage_index
from optimizer.memory.customers import MemoryCustomerStore
from optimizer.memory.outbox import MemoryOutboxStore
from optimizer.outbound import OutboxAck, UsageRow
from optimizer.ports.customers import Profile
from tests.optimizer.unit.fakes import FakeDecisions, health_trigger, snapshot

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
CONFIG = UsageIndexConfig()
HEALTHY = UsageIn(recency_days=0, sessions_30d=30, minutes_30d=1800)
FADING = UsageIn(recency_days=10, sessions_30d=6, minutes_30d=200)
GONE = UsageIn(recency_days=60, sessions_30d=0, minutes_30d=0)
CATALOG = snapshot(
    health_trigger("health_b_to_c", "B", "C"),
    health_trigger("health_c_to_d", "C", "D"),
    health_trigger("into_d", "A", "D"),
)


class Sent:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, events: list[Any], *, now: datetime) -> None:
        self.events.extend(events)


@pytest.fixture
def people() -> MemoryCustomerStore:
    store = MemoryCustomerStore(channels=["email", "app_push", "app_inbox"])
    for customer_id, klass in (("c1", "B"), ("c2", "C"), ("c3", "A")):
        customers.upsert_customer(
            store, customer_id=customer_id, data=Profile(health_class=klass), now=T0
        )
    return store


@pytest.fixture
def outbox(people: MemoryCustomerStore) -> MemoryOutboxStore:
    return MemoryOutboxStore(people)


def test_health_class_follows_the_usage_index_and_falls_with_it() -> None:
    classes = [health_class(usage_index(u, CONFIG), CONFIG) for u in (HEALTHY, FADING, GONE)]
    assert classes[0] is HealthClass.A
    assert classes[-1] is HealthClass.D
    assert [c.rank for c in classes] == sorted(c.rank for c in classes)
    assert all(0.0 <= usage_index(u, CONFIG) <= 1.0 for u in (HEALTHY, FADING, GONE))


def test_trigger_table_holds_only_worsening_changes() -> None:
    table = outbound.trigger_table(CATALOG)
    assert table[("C", "D")] == "health_c_to_d"
    assert table[("B", "D")] == "health_c_to_d"  # no exact trigger: any trigger into D
    assert all(HealthClass(after).rank > HealthClass(before).rank for before, after in table)


def test_a_worsening_class_emits_its_trigger_once(
    people: MemoryCustomerStore, outbox: MemoryOutboxStore
) -> None:
    decisions = FakeDecisions(CATALOG)
    (result,) = outbound.record_usage(
        outbox, decisions, rows=[UsageRow("c2", GONE)], config=CONFIG, now=T0
    )
    assert (result.previous_class, result.health_class) == ("C", "D")
    assert result.trigger == "health_c_to_d"
    assert result.decision_id is not None
    assert customers.get_customer(people, customer_id="c2").profile.health_class == "D"
    (request,) = decisions.requests
    assert request.channels == ["app_push", "email"]  # the push channels only

    assert outbound.emit_pending_triggers(outbox, decisions, now=T0) == {}  # a sweep: nothing new
    (same,) = outbound.record_usage(
        outbox, decisions, rows=[UsageRow("c2", GONE)], config=CONFIG, now=T0
    )
    assert same.trigger is None
    assert same.decision_id is None
    assert len(decisions.requests) == 1
    assert len(outbound.fetch_outbox(outbox, channel="email", limit=10, now=T0)) == 1


def test_an_improving_class_or_an_unknown_customer_emits_nothing(
    outbox: MemoryOutboxStore,
) -> None:
    decisions = FakeDecisions(CATALOG)
    (better,) = outbound.record_usage(
        outbox, decisions, rows=[UsageRow("c2", HEALTHY)], config=CONFIG, now=T0
    )
    assert (better.previous_class, better.health_class, better.trigger) == ("C", "A", None)
    with pytest.raises(NotFoundError):
        outbound.record_usage(
            outbox,
            decisions,
            rows=[UsageRow("c1", GONE), UsageRow("nobody", GONE)],
            config=CONFIG,
            now=T0,
        )
    assert outbox.customers.health_class_of("c1") == "B"  # the batch wrote nothing
    assert decisions.requests == []


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["c1", "c2", "c3"]),
            st.sampled_from([HEALTHY, FADING, GONE]),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_every_worsening_change_is_decided_exactly_once_however_usage_and_sweeps_interleave(
    steps: list[tuple[str, UsageIn, bool]],
) -> None:
    people = MemoryCustomerStore(channels=["email"])
    for customer_id in ("c1", "c2", "c3"):
        customers.upsert_customer(people, customer_id=customer_id, data=Profile(), now=T0)
    outbox = MemoryOutboxStore(people)
    decisions = FakeDecisions(CATALOG)
    worsened = 0
    for customer_id, usage, emit in steps:
        (result,) = outbound.record_usage(
            outbox, decisions, rows=[UsageRow(customer_id, usage)], config=CONFIG, now=T0, emit=emit
        )
        worsened += result.trigger is not None
    outbound.emit_pending_triggers(outbox, decisions, now=T0)
    outbound.emit_pending_triggers(outbox, decisions, now=T0)
    assert len(decisions.requests) == len({r.request_id for r in decisions.requests}) == worsened
    queued = outbound.fetch_outbox(outbox, channel="email", limit=100, now=T0)
    assert len(queued) == worsened


def test_several_observations_of_one_customer_chain_their_classes(
    outbox: MemoryOutboxStore,
) -> None:
    results = outbound.record_usage(
        outbox,
        FakeDecisions(CATALOG),
        rows=[UsageRow("c3", FADING), UsageRow("c3", GONE)],
        config=CONFIG,
        now=T0,
    )
    assert results[1].previous_class == results[0].health_class


def test_a_no_contact_decision_is_emitted_but_not_queued(outbox: MemoryOutboxStore) -> None:
    decisions = FakeDecisions(CATALOG, no_contact=frozenset({"c2"}))
    (result,) = outbound.record_usage(
        outbox, decisions, rows=[UsageRow("c2", GONE)], config=CONFIG, now=T0
    )
    assert result.decision_id is not None
    assert outbound.fetch_outbox(outbox, channel="email", limit=10, now=T0) == []
    assert outbox.pending_emissions(limit=10) == []


def test_outbox_lease_ack_and_expiry(outbox: MemoryOutboxStore) -> None:
    decisions = FakeDecisions(CATALOG)
    outbound.record_usage(
        outbox,
        decisions,
        rows=[UsageRow("c1", GONE), UsageRow("c2", GONE)],
        config=CONFIG,
        now=T0,
    )
    leased = outbound.fetch_outbox(outbox, channel="email", limit=1, lease_seconds=60, now=T0)
    rest = outbound.fetch_outbox(outbox, channel="email", limit=10, lease_seconds=60, now=T0)
    assert [i.customer_id for i in leased + rest] == ["c1", "c2"]  # oldest first
    assert leased[0].answer.decision_id == leased[0].decision_id
    assert outbound.fetch_outbox(outbox, channel="app_push", limit=10, now=T0) == []
    assert outbound.fetch_outbox(outbox, channel="email", limit=10, now=T0) == []  # all leased

    sent = Sent()
    first = leased[0].outbox_id
    result = outbound.ack_outbox(
        outbox, ack=OutboxAck(ids=[first, 999]), record_sent=sent, now=T0 + timedelta(seconds=5)
    )
    assert (result.acked, result.unknown) == ([first], [999])
    assert [(d, e.kind, e.event_id) for d, e in sent.events] == [
        (leased[0].decision_id, "sent", f"outbox-{first}")
    ]

    later = T0 + timedelta(seconds=61)
    (returned,) = outbound.fetch_outbox(outbox, channel="email", limit=10, now=later)
    assert returned.outbox_id == rest[0].outbox_id  # its lease ran out; the acked one stays away
    again = outbound.ack_outbox(outbox, ack=OutboxAck(ids=[first]), record_sent=sent, now=later)
    assert again.acked == [first]  # acknowledging twice is harmless


def test_erasure_removes_the_customers_outbox_entries(
    people: MemoryCustomerStore, outbox: MemoryOutboxStore
) -> None:
    outbound.record_usage(
        outbox, FakeDecisions(CATALOG), rows=[UsageRow("c2", GONE)], config=CONFIG, now=T0
    )
    customers.erase_customer(people, customer_id="c2", salt="s", actor="dpo")
    assert outbound.fetch_outbox(outbox, channel="email", limit=10, now=T0) == []
