"""The store of decisions behaves alike in memory and on both databases."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from campaign_db.catalog import load_catalog
from campaign_db.customers import add_customers
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import session_scope
from optimizer.core.catalog import CatalogSpec
from optimizer.core.decision import CustomerProfile, CustomerRecord, PastContact
from optimizer.core.values import DecisionReason, new_id
from optimizer.memory.decisions import MemoryDecisionStore
from optimizer.ports.decisions import (
    BatchKeys,
    BudgetPeriod,
    DecisionStore,
    DecisionWrite,
    LogEntry,
    PendingReward,
    ReservedContact,
)

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
SINCE = T0 - timedelta(days=30)
ANA = CustomerProfile(
    id="ana",
    health_class="D",
    usage_index=0.25,
    customer_since=date(2024, 5, 1),
    time_zone="Europe/Berlin",
    language="en",
    attributes={"plan": "family"},
)
BEN = CustomerProfile(
    id="ben",
    health_class="C",
    usage_index=0.5,
    customer_since=None,
    time_zone="UTC",
    language="de",
    attributes={},
)


@pytest.fixture
def store(store_engine: Engine | None, example_catalog: CatalogSpec) -> DecisionStore:
    """Ana consents to email and SMS, Ben to nothing."""
    if store_engine is None:
        memory = MemoryDecisionStore()
        memory.add_customer(ANA, ["email", "sms"])
        memory.add_customer(BEN)
        return memory
    with session_scope(store_engine, write=True) as session:
        load_catalog(session, catalog=example_catalog, source="test", actor="test")
        add_customers(
            session,
            customers=[
                {
                    "id": p.id,
                    "health_class": p.health_class,
                    "usage_index": p.usage_index,
                    "customer_since": p.customer_since,
                    "time_zone": p.time_zone,
                    "language": p.language,
                    "attributes": dict(p.attributes) or None,
                }
                for p in (ANA, BEN)
            ],
            consents=[("ana", "email"), ("ana", "sms")],
            now=T0 - timedelta(days=60),
        )
    return SqlDecisionStore(store_engine)


def _write(
    request_id: str,
    customer_id: str,
    *,
    at: datetime = T0,
    channel: str | None = "email",
    reward: bool = True,
) -> DecisionWrite:
    decision_id = new_id()
    answer = {"decision_id": str(decision_id), "request_id": request_id, "contact": bool(channel)}
    entry = LogEntry(
        id=decision_id,
        request_id=request_id,
        created_at=at,
        customer_id=customer_id,
        trigger="health_c_to_d",
        catalog_revision=1,
        reason=DecisionReason.policy if channel else DecisionReason.policy_no_contact,
        context={"health_class": "D", "hour": 10},
        eligibility_trace={"channel:sms": "no consent"},
        response=json.dumps(answer),
        request_digest={"trigger": "abc", "channels": "def", "context": "123"},
        candidate_action_ids=[90_001, 90_002],
        frame_key="churn_prevention",
        frame_version=1,
        policy_name="churn_prevention",
        policy_version="untrained",
        probabilities=np.array([0.75, 0.25]),
        chosen_action_id=90_001,
        probability=0.75,
        seed=42,
        send_at=at + timedelta(hours=1) if channel else None,
    )
    contact = None
    if channel is not None:
        contact = ReservedContact(
            id=new_id(),
            customer_id=customer_id,
            decision_id=decision_id,
            frame_key="churn_prevention",
            channel=channel,
            send_at=at + timedelta(hours=1),
            created_at=at,
        )
    pending = PendingReward(
        decision_id=decision_id, window_closes_at=at + timedelta(days=7), sent=channel is None
    )
    return DecisionWrite(entry=entry, contact=contact, reward=pending if reward else None)


def _write_all(store: DecisionStore, writes: Sequence[DecisionWrite]) -> list[object]:
    """Write `writes` in one batch; returns what the planner was shown."""
    shown: list[object] = []

    def plan(
        states: Mapping[str, CustomerRecord],
        logged: Mapping[str, str],
        spent: Mapping[BudgetPeriod, float],
    ) -> Sequence[DecisionWrite]:
        shown.extend([dict(states), dict(logged)])
        return writes

    keys = BatchKeys(
        customer_ids=[w.entry.customer_id for w in writes],
        request_ids=[w.entry.request_id for w in writes],
        since=SINCE,
    )
    store.write_batch(take=lambda: keys, plan=plan)
    return shown


def test_customers_read_with_their_granted_consents_and_no_history(store: DecisionStore) -> None:
    states = store.read_customers(["ben", "ana", "nobody"], SINCE)
    assert set(states) == {"ana", "ben"}
    assert states["ana"].profile == ANA
    assert states["ana"].consents == frozenset({"email", "sms"})
    assert states["ana"].history == ()
    assert states["ben"].profile == BEN
    assert states["ben"].consents == frozenset()


def test_a_written_batch_is_seen_by_the_next_read_in_send_time_order(
    store: DecisionStore,
) -> None:
    later, earlier = _write("q1", "ana", at=T0), _write("q2", "ana", at=T0 - timedelta(days=2))
    _write_all(store, [later, earlier, _write("q3", "ben", channel=None)])
    ana = store.read_customers(["ana"], SINCE)["ana"]
    assert ana.history == (
        PastContact("churn_prevention", "email", T0 - timedelta(days=2, hours=-1)),
        PastContact("churn_prevention", "email", T0 + timedelta(hours=1)),
    )
    assert store.read_customers(["ana"], T0)["ana"].history == ana.history[1:]
    assert store.read_customers(["ben"], SINCE)["ben"].history == ()
    assert store.logged_requests(["q1", "q3", "q9"]) == {"q1": "ana", "q3": "ben"}


def test_the_planner_sees_the_locked_customers_and_the_request_ids_already_logged(
    store: DecisionStore,
) -> None:
    _write_all(store, [_write("q1", "ana")])
    shown = _write_all(store, [_write("q2", "ana")])
    states, logged = shown
    assert isinstance(states, dict)
    assert len(states["ana"].history) == 1
    assert logged == {}
    again: list[object] = []

    def plan(
        states: Mapping[str, CustomerRecord],
        logged: Mapping[str, str],
        spent: Mapping[BudgetPeriod, float],
    ) -> Sequence[DecisionWrite]:
        again.append(dict(logged))
        return []

    keys = BatchKeys(customer_ids=["ana"], request_ids=["q1", "q5"], since=SINCE)
    store.write_batch(take=lambda: keys, plan=plan)
    assert again == [{"q1": "ana"}]


def test_a_stored_request_gives_back_its_customer_answer_and_digest(store: DecisionStore) -> None:
    write = _write("q1", "ana")
    _write_all(store, [write])
    stored = store.stored_request("q1")
    assert stored is not None
    assert stored.customer_id == "ana"
    assert stored.answer == json.loads(write.entry.response)
    assert stored.digest == write.entry.request_digest
    assert store.stored_request("q2") is None


def test_a_logged_decision_reads_back_with_its_candidates_and_probabilities(
    store: DecisionStore,
) -> None:
    write = _write("q1", "ana")
    _write_all(store, [write])
    logged = store.logged_decision(write.entry.id)
    assert logged is not None
    assert logged.answer == json.loads(write.entry.response)
    assert logged.context == write.entry.context
    assert [(c.action_id, c.probability) for c in logged.candidates] == [
        (90_001, 0.75),
        (90_002, 0.25),
    ]
    assert {c.signature for c in logged.candidates} == {"?"}  # not in the catalog
    assert (logged.chosen_action_id, logged.seed, logged.catalog_revision) == (90_001, 42, 1)
    assert logged.eligibility_trace == {"channel:sms": "no consent"}
    assert store.logged_decision(new_id()) is None


def test_a_batch_that_logs_a_request_id_again_writes_nothing(store: DecisionStore) -> None:
    _write_all(store, [_write("q1", "ana")])
    with pytest.raises(Exception):  # noqa: B017, PT011 - the database's own error on SQL
        _write_all(store, [_write("q2", "ben", channel=None), _write("q1", "ana")])
    assert store.logged_requests(["q1", "q2"]) == {"q1": "ana"}
    assert len(store.read_customers(["ana"], SINCE)["ana"].history) == 1
