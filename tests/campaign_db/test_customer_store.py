"""The customer store behaves alike in memory and on both databases."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from campaign_db.customers import set_consent
from campaign_db.engine import session_scope
from campaign_db.models import Consent as ConsentRow
from optimizer.core.privacy import pseudonym
from optimizer.ports.audit import AuditEntry
from optimizer.ports.customers import (
    Consent,
    Profile,
    UnknownChannelError,
    UnknownCustomerError,
)
from optimizer.ports.outbox import UsageObservation
from tests.campaign_db.stores import Stores, stores_of

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
PROFILE = Profile(
    health_class="C",
    usage_index=0.3,
    customer_since=date(2019, 5, 1),
    time_zone="Europe/Vienna",
    language="en",
    attributes={"tariff": "family", "devices": 3, "sport": True, "score": 0.5, "none": None},
)


@pytest.fixture
def stores(store_engine: Engine | None) -> Stores:
    return stores_of(store_engine)


def _consent(customer_id: str, channel: str, granted: bool, at: datetime) -> Consent:
    return Consent(customer_id, channel, granted, "crm", at)


def _audit(subject: str, at: datetime) -> AuditEntry:
    return AuditEntry(actor="crm", action="consent.grant", subject=subject, at=at)


def test_upsert_round_trips_the_profile_and_replaces_it_whole(stores: Stores) -> None:
    store = stores.customers
    created, new = store.upsert(customer_id="c1", profile=PROFILE, now=T0)
    assert new
    assert created.profile == PROFILE
    assert (created.created_at, created.updated_at) == (T0, T0)
    later = T0 + timedelta(days=1)
    replaced, new = store.upsert(customer_id="c1", profile=Profile(), now=later)
    assert not new
    assert replaced.profile == Profile()
    assert (replaced.created_at, replaced.updated_at) == (T0, later)
    assert store.get(customer_id="c1") == replaced
    assert store.get(customer_id="c2") is None


def test_an_import_creates_every_customer_with_its_granted_consents(stores: Stores) -> None:
    plain = Profile(health_class="A", usage_index=0.9, customer_since=date(2020, 1, 2))
    stores.customers.import_customers(
        [("c1", plain), ("c2", Profile())], granted=[("c1", "email"), ("c1", "app_push")], now=T0
    )
    first = stores.customers.get(customer_id="c1")
    second = stores.customers.get(customer_id="c2")
    assert first is not None
    assert second is not None
    assert first.profile == plain
    assert (first.created_at, first.updated_at) == (T0, T0)
    assert dict(first.consents) == {"email": True, "app_push": True}
    assert dict(second.consents) == {}


def test_the_latest_consent_wins_with_its_audit_entry(stores: Stores) -> None:
    store = stores.customers
    store.upsert(customer_id="c1", profile=PROFILE, now=T0)
    for i, granted in enumerate((True, False, True)):
        at = T0 + timedelta(minutes=i)
        assert store.set_consent(
            _consent("c1", "email", granted, at), audit=_audit("c1/email", at)
        ) == _consent("c1", "email", granted, at)
    store.set_consent(_consent("c1", "app_push", False, T0), audit=_audit("c1/app_push", T0))
    customer = store.get(customer_id="c1")
    assert customer is not None
    assert customer.consents == {"email": True, "app_push": False}
    assert len(stores.audit.entries(subject="c1/")) == 4


def test_a_consent_for_an_unknown_customer_or_channel_writes_nothing(stores: Stores) -> None:
    store = stores.customers
    store.upsert(customer_id="c1", profile=PROFILE, now=T0)
    with pytest.raises(UnknownCustomerError):
        store.set_consent(_consent("c9", "email", True, T0), audit=_audit("c9/email", T0))
    with pytest.raises(UnknownChannelError):
        store.set_consent(_consent("c1", "fax", True, T0), audit=_audit("c1/fax", T0))
    assert stores.audit.entries() == []
    customer = store.get(customer_id="c1")
    assert customer is not None
    assert customer.consents == {}


def test_erasure_forgets_the_person_and_keeps_the_trail_under_the_pseudonym(
    stores: Stores,
) -> None:
    store = stores.customers
    for customer_id in ("c1", "c10"):
        store.upsert(customer_id=customer_id, profile=PROFILE, now=T0)
        store.set_consent(
            _consent(customer_id, "email", True, T0), audit=_audit(f"{customer_id}/email", T0)
        )
    stores.outbox.apply_usage(
        [UsageObservation("c1", 0.1, "D", 40, 0, 0, T0)], triggers={("C", "D"): "health_c_to_d"}
    )

    alias = store.erase(customer_id="c1", salt="salt", actor="dpo", now=T0)

    assert alias == pseudonym("c1", "salt")
    assert store.get(customer_id="c1") is None
    assert stores.outbox.pending_emissions(limit=10) == []
    subjects = {e.subject for e in stores.audit.entries()}
    assert subjects == {f"{alias}/email", "c10/email", alias}
    (erasure,) = stores.audit.entries(action="customer.erase")
    assert (erasure.actor, erasure.subject) == ("dpo", alias)
    assert store.erase(customer_id="c1", salt="salt", actor="dpo", now=T0) is None
    assert store.get(customer_id="c10") is not None


def test_concurrent_writers_of_one_new_consent_do_not_collide(store_engine: Engine | None) -> None:
    """Without the customer's lock (a delivery event revoking consent takes none), two
    transactions may both find no consent row: the second one must update, not fail."""
    if store_engine is None or store_engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; memory has no transactions")
    stores = stores_of(store_engine)
    stores.customers.upsert(customer_id="c1", profile=PROFILE, now=T0)
    errors: list[BaseException] = []

    def revoke() -> None:
        try:
            with session_scope(store_engine, write=True) as session:
                set_consent(
                    session,
                    customer_id="c1",
                    channel_key="email",
                    granted=False,
                    source="unsubscribed",
                    at=T0 + timedelta(minutes=1),
                )
        except BaseException as exc:
            errors.append(exc)

    with Session(store_engine) as first:
        set_consent(first, customer_id="c1", channel_key="email", granted=True, source="crm", at=T0)
        second = threading.Thread(target=revoke)
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waits for the first transaction's row
        first.commit()
    second.join(timeout=10)
    assert errors == []
    with session_scope(store_engine) as session:
        stored = session.get(ConsentRow, ("c1", "email"))
        assert stored is not None
        assert (stored.granted, stored.source) == (False, "unsubscribed")
