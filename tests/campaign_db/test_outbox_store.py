"""The outbox store (usage, class changes, emissions, lease and ack) behaves alike in memory
and on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from optimizer.ports.customers import Profile, UnknownCustomerError
from optimizer.ports.outbox import Emission, QueuedContact, UsageObservation
from tests.campaign_db.stores import Stores, stores_of

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
TRIGGERS = {("B", "C"): "health_b_to_c", ("C", "D"): "health_c_to_d", ("B", "D"): "into_d"}


@pytest.fixture
def stores(store_engine: Engine | None) -> Stores:
    stores = stores_of(store_engine)
    for customer_id in ("c1", "c2", "c3"):
        stores.customers.upsert(customer_id=customer_id, profile=Profile(health_class="B"), now=T0)
    return stores


def _seen(customer_id: str, klass: str, at: datetime = T0) -> UsageObservation:
    return UsageObservation(customer_id, 0.5, klass, 3.0, 10.0, 300.0, at)


def _queue(stores: Stores, customer_id: str, channel: str = "email") -> QueuedContact:
    decision_id = uuid.uuid4()
    answer = {"decision_id": str(decision_id), "customer_id": customer_id, "contact": True}
    stores.log_decision(decision_id, customer_id, answer)
    return QueuedContact(decision_id, customer_id, channel, T0 + timedelta(hours=1), answer)


def _emit_all(stores: Stores, channel: str = "email") -> list[QueuedContact]:
    queued = []
    emissions = []
    for pending in stores.outbox.pending_emissions(limit=100):
        contact = _queue(stores, pending.customer_id, channel)
        queued.append(contact)
        emissions.append(Emission(pending.change_id, contact.decision_id, contact))
    stores.outbox.record_emissions(emissions, now=T0)
    return queued


def test_usage_moves_the_class_and_a_worsening_change_waits_for_its_decision(
    stores: Stores,
) -> None:
    applied = stores.outbox.apply_usage(
        [_seen("c1", "C"), _seen("c1", "D"), _seen("c2", "A"), _seen("c3", "B")],
        triggers=TRIGGERS,
    )
    assert [(a.previous_class, a.health_class, a.trigger) for a in applied] == [
        ("B", "C", "health_b_to_c"),
        ("C", "D", "health_c_to_d"),
        ("B", "A", None),
        ("B", "B", None),
    ]
    customer = stores.customers.get(customer_id="c1")
    assert customer is not None
    assert customer.profile.health_class == "D"
    pending = stores.outbox.pending_emissions(limit=10)
    assert [(p.customer_id, p.trigger) for p in pending] == [
        ("c1", "health_b_to_c"),
        ("c1", "health_c_to_d"),
    ]
    assert pending[0].change_id < pending[1].change_id
    assert pending[0].changed_at == T0
    assert len(stores.outbox.pending_emissions(limit=1)) == 1


def test_usage_of_an_unknown_customer_stores_nothing(stores: Stores) -> None:
    with pytest.raises(UnknownCustomerError) as raised:
        stores.outbox.apply_usage([_seen("c1", "D"), _seen("c9", "D")], triggers=TRIGGERS)
    assert raised.value.customer_id == "c9"
    customer = stores.customers.get(customer_id="c1")
    assert customer is not None
    assert customer.profile.health_class == "B"  # the batch stored nothing
    assert stores.outbox.pending_emissions(limit=10) == []


def test_an_emission_is_recorded_once_and_queued_once(stores: Stores) -> None:
    stores.outbox.apply_usage([_seen("c1", "D"), _seen("c2", "D")], triggers=TRIGGERS)
    first, second = stores.outbox.pending_emissions(limit=10)
    contact = _queue(stores, "c1")
    no_contact = uuid.uuid4()
    emissions = [
        Emission(first.change_id, contact.decision_id, contact),
        Emission(second.change_id, no_contact, None),
    ]
    stores.outbox.record_emissions(emissions, now=T0)
    stores.outbox.record_emissions(emissions, now=T0)  # a sweep after a crash repeats it
    assert stores.outbox.pending_emissions(limit=10) == []
    leased = stores.outbox.lease(channel="email", limit=10, now=T0, lease_until=T0)
    assert [(c.decision_id, c.customer_id, c.send_at) for c in leased] == [
        (contact.decision_id, "c1", contact.send_at)
    ]
    assert leased[0].answer == contact.answer


def test_lease_ack_and_expiry(stores: Stores) -> None:
    stores.outbox.apply_usage(
        [_seen("c1", "D"), _seen("c2", "D"), _seen("c3", "D")], triggers=TRIGGERS
    )
    queued = _emit_all(stores)
    lease_until = T0 + timedelta(minutes=5)
    first = stores.outbox.lease(channel="email", limit=2, now=T0, lease_until=lease_until)
    rest = stores.outbox.lease(channel="email", limit=10, now=T0, lease_until=lease_until)
    assert [c.decision_id for c in first + rest] == [q.decision_id for q in queued]
    assert stores.outbox.lease(channel="email", limit=10, now=T0, lease_until=lease_until) == []
    assert stores.outbox.lease(channel="app_push", limit=10, now=T0, lease_until=lease_until) == []

    ids = [c.outbox_id for c in first]
    acked = stores.outbox.ack(ids=[*ids, 10_000], now=T0)
    assert sorted((a.outbox_id, a.decision_id) for a in acked) == sorted(
        (c.outbox_id, c.decision_id) for c in first
    )
    assert sorted(a.outbox_id for a in stores.outbox.ack(ids=ids, now=T0)) == sorted(ids)

    after = lease_until + timedelta(seconds=1)
    assert stores.outbox.lease(channel="email", limit=10, now=lease_until, lease_until=after) == []
    (back,) = stores.outbox.lease(
        channel="email", limit=10, now=after, lease_until=after + timedelta(minutes=5)
    )
    assert back.outbox_id == rest[0].outbox_id  # the unacknowledged one, once its lease ran out


def test_erasure_takes_the_customers_changes_and_outbox_entries(stores: Stores) -> None:
    stores.outbox.apply_usage([_seen("c1", "D"), _seen("c2", "D")], triggers=TRIGGERS)
    _emit_all(stores)
    stores.outbox.apply_usage([_seen("c1", "C"), _seen("c1", "D")], triggers=TRIGGERS)
    stores.customers.erase(customer_id="c1", salt="s", actor="dpo", now=T0)
    assert stores.outbox.pending_emissions(limit=10) == []
    leased = stores.outbox.lease(channel="email", limit=10, now=T0, lease_until=T0)
    assert [c.customer_id for c in leased] == ["c2"]
