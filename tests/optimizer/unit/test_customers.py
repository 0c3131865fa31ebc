"""Customer use cases on the in-memory store: profiles, consents, erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optimizer import customers
from optimizer.core.privacy import pseudonym
from optimizer.customers import ConsentUpdate
from optimizer.errors import NotFoundError
from optimizer.memory.audit import MemoryAuditLog
from optimizer.memory.customers import MemoryCustomerStore
from optimizer.memory.outbox import MemoryOutboxStore
from optimizer.ports.customers import Profile
from optimizer.ports.outbox import UsageObservation

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.fixture
def audit() -> MemoryAuditLog:
    return MemoryAuditLog()


@pytest.fixture
def store(audit: MemoryAuditLog) -> MemoryCustomerStore:
    return MemoryCustomerStore(channels=["email", "sms"], audit=audit)


def test_upsert_creates_then_replaces_and_keeps_the_creation_time(
    store: MemoryCustomerStore,
) -> None:
    created, new = customers.upsert_customer(
        store, customer_id="c1", data=Profile(health_class="C"), now=T0
    )
    replaced, again = customers.upsert_customer(
        store, customer_id="c1", data=Profile(language="en"), now=T0 + timedelta(hours=1)
    )
    assert (new, again) == (True, False)
    assert replaced.profile == Profile(language="en")  # the whole profile is replaced
    assert replaced.created_at == created.created_at == T0
    assert replaced.updated_at == T0 + timedelta(hours=1)
    assert customers.get_customer(store, customer_id="c1") == replaced


def test_the_latest_consent_wins_and_every_change_is_audited(
    store: MemoryCustomerStore, audit: MemoryAuditLog
) -> None:
    customers.upsert_customer(store, customer_id="c1", data=Profile(), now=T0)
    for granted in (True, False, True, False):
        answer = customers.set_consent(
            store, customer_id="c1", channel="email", update=ConsentUpdate(granted=granted)
        )
        assert answer.granted is granted
    customers.set_consent(
        store, customer_id="c1", channel="sms", update=ConsentUpdate(granted=True)
    )
    assert customers.get_customer(store, customer_id="c1").consents == {"email": False, "sms": True}
    assert [e.action for e in audit.entries(subject="c1/email")] == [
        "consent.revoke",
        "consent.grant",
        "consent.revoke",
        "consent.grant",
    ]


def test_consent_for_an_unknown_customer_or_channel_is_not_found_and_not_audited(
    store: MemoryCustomerStore, audit: MemoryAuditLog
) -> None:
    customers.upsert_customer(store, customer_id="c1", data=Profile(), now=T0)
    grant = ConsentUpdate(granted=True)
    with pytest.raises(NotFoundError) as unknown_customer:
        customers.set_consent(store, customer_id="nobody", channel="email", update=grant)
    with pytest.raises(NotFoundError) as unknown_channel:
        customers.set_consent(store, customer_id="c1", channel="fax", update=grant)
    assert (unknown_customer.value.field, unknown_channel.value.field) == ("customer_id", "channel")
    assert audit.entries() == []
    assert customers.get_customer(store, customer_id="c1").consents == {}


def test_erasure_forgets_the_customer_and_moves_the_audit_trail_to_the_pseudonym(
    store: MemoryCustomerStore, audit: MemoryAuditLog
) -> None:
    outbox = MemoryOutboxStore(store)
    customers.upsert_customer(store, customer_id="c1", data=Profile(health_class="C"), now=T0)
    customers.upsert_customer(store, customer_id="c10", data=Profile(), now=T0)
    customers.set_consent(
        store, customer_id="c1", channel="email", update=ConsentUpdate(granted=True)
    )
    customers.set_consent(
        store, customer_id="c10", channel="sms", update=ConsentUpdate(granted=True)
    )
    outbox.apply_usage(
        [UsageObservation("c1", 0.1, "D", 30, 0, 0, T0)], triggers={("C", "D"): "health_c_to_d"}
    )

    result = customers.erase_customer(store, customer_id="c1", salt="s", actor="dpo")

    alias = pseudonym("c1", "s")
    assert result.pseudonym == alias
    assert result.erased
    with pytest.raises(NotFoundError):
        customers.get_customer(store, customer_id="c1")
    assert outbox.pending_emissions(limit=10) == []
    subjects = [e.subject for e in audit.entries()]
    assert all(not s.startswith("c1/") and s != "c1" for s in subjects)
    assert f"{alias}/email" in subjects
    assert "c10/sms" in subjects
    assert audit.entries(action="customer.erase")[0].subject == alias
    with pytest.raises(NotFoundError):
        customers.erase_customer(store, customer_id="c1", salt="s", actor="dpo")
    again, created = customers.upsert_customer(store, customer_id="c1", data=Profile(), now=T0)
    assert created
    assert again.consents == {}
