"""Idempotency keys of feedback: concurrent duplicates, reused keys, unsubscribes never lost."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from campaign_db.engine import session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.models import Consent, Conversion, DeliveryEvent
from optimizer.feedback import ConversionReport, EventReport, record_conversion, record_event
from tests.api.test_loop_api import contact_decision, conversion, reward_of, send_at

THREADS = 16
ROUNDS = 5


def run_together(call: Callable[[], Any], threads: int = THREADS) -> list[Any]:
    """Start `threads` calls at the same moment; each returns its result or its exception."""
    barrier = threading.Barrier(threads)
    outcomes: list[Any] = [None] * threads

    def worker(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = call()
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return outcomes


def test_concurrent_duplicate_conversions_all_get_the_first_result(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "race-conv")
    when = send_at(answer) + timedelta(days=1)
    for round_ in range(ROUNDS):
        posted = ConversionReport(
            conversion_id=f"race-{round_}",
            customer_id=answer["customer_id"],
            kind="subscription",
            value=4.5,
            occurred_at=when,
        )
        outcomes = run_together(
            lambda posted=posted: record_conversion(
                SqlFeedbackStore(loaded_engine), conversion=posted
            )
        )
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert errors == []
        assert sum(not o.duplicate for o in outcomes) == 1
        assert {(o.conversion_id, o.status, o.decision_id) for o in outcomes} == {
            (f"race-{round_}", "attributed", uuid.UUID(answer["decision_id"]))
        }
    reward = reward_of(loaded_engine, answer["decision_id"])
    assert (reward.conversions, reward.conversion_value) == (ROUNDS, ROUNDS * 4.5)


def test_concurrent_duplicate_events_all_get_the_first_result(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "race-event")
    decision_id = uuid.UUID(answer["decision_id"])
    for round_ in range(ROUNDS):
        event = EventReport(kind="opened", event_id=f"race-event-{round_}")
        outcomes = run_together(
            lambda event=event: record_event(
                SqlFeedbackStore(loaded_engine), decision_id=decision_id, event=event
            )
        )
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert sum(not o.duplicate for o in outcomes) == 1
        assert {(o.decision_id, o.kind) for o in outcomes} == {(decision_id, "opened")}
    with session_scope(loaded_engine) as session:
        stored = session.exec(
            select(func.count())
            .select_from(DeliveryEvent)
            .where(DeliveryEvent.decision_id == decision_id)
        ).one()
    assert stored == ROUNDS


def granted(engine: Engine, customer_id: str, channel: str) -> bool | None:
    with session_scope(engine) as session:
        consent = session.get(Consent, (customer_id, channel))
        return None if consent is None else consent.granted


def test_reused_event_id_for_another_decision_is_a_conflict_and_the_unsubscribe_still_holds(
    client: TestClient, loaded_engine: Engine
) -> None:
    first = contact_decision(client, "reuse-a")
    second = contact_decision(client, "reuse-b")
    sent = client.post(
        f"/v1/decisions/{first['decision_id']}/events", json={"kind": "sent", "event_id": "e-9"}
    )
    assert sent.status_code == 200, sent.text
    customer, channel = second["customer_id"], second["action"]["channel"]
    assert granted(loaded_engine, customer, channel) is True

    reused = client.post(
        f"/v1/decisions/{second['decision_id']}/events",
        json={"kind": "unsubscribed", "event_id": "e-9"},
    )
    assert reused.status_code == 409, reused.text
    problem = reused.json()["problems"][0]
    assert problem["field"] == "event_id"
    assert first["decision_id"] in problem["message"]
    assert "sent" in problem["message"]
    assert granted(loaded_engine, customer, channel) is False
    assert reward_of(loaded_engine, first["decision_id"]).unsubscribed is False

    retried = client.post(
        f"/v1/decisions/{second['decision_id']}/events",
        json={"kind": "unsubscribed", "event_id": "e-10"},
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["duplicate"] is False
    assert reward_of(loaded_engine, second["decision_id"]).unsubscribed is True


def test_reused_event_id_with_another_kind_is_a_conflict_and_changes_nothing(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "reuse-kind")
    url = f"/v1/decisions/{answer['decision_id']}/events"
    assert client.post(url, json={"kind": "sent", "event_id": "e-k"}).status_code == 200
    reused = client.post(url, json={"kind": "bounced", "event_id": "e-k"})
    assert reused.status_code == 409, reused.text
    assert reused.json()["problems"][0]["field"] == "event_id"
    assert "sent" in reused.json()["problems"][0]["message"]
    reward = reward_of(loaded_engine, answer["decision_id"])
    assert (reward.sent, reward.failed) == (True, False)
    again = client.post(url, json={"kind": "sent", "event_id": "e-k"})
    assert again.status_code == 200
    assert again.json() == {"decision_id": answer["decision_id"], "kind": "sent", "duplicate": True}


def test_reused_conversion_id_with_other_content_is_a_conflict(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "reuse-conv")
    when = send_at(answer) + timedelta(days=1)
    first = conversion(client, "c-reused", answer["customer_id"], when, value=5.0)
    assert first.status_code == 202, first.text
    for customer, at, value in (
        ("somebody-else", when, 5.0),
        (answer["customer_id"], when + timedelta(hours=1), 5.0),
        (answer["customer_id"], when, 6.0),
    ):
        reused = conversion(client, "c-reused", customer, at, value=value)
        assert reused.status_code == 409, reused.text
        assert reused.json()["problems"][0]["field"] == "conversion_id"
    again = conversion(client, "c-reused", answer["customer_id"], when, value=5.0)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert reward_of(loaded_engine, answer["decision_id"]).conversions == 1
    with session_scope(loaded_engine) as session:
        stored = session.get(Conversion, "c-reused")
        assert stored is not None
        assert (stored.customer_id, stored.value) == (answer["customer_id"], 5.0)


def test_concurrent_duplicate_conversion_posts_answer_202_once_and_200_otherwise(
    client: TestClient,
) -> None:
    answer = contact_decision(client, "race-http")
    when = send_at(answer) + timedelta(days=1)
    for round_ in range(ROUNDS):
        responses = run_together(
            lambda round_=round_: conversion(
                client, f"race-http-{round_}", answer["customer_id"], when
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * (THREADS - 1) + [202]
        assert {r.json()["decision_id"] for r in responses} == {answer["decision_id"]}


def test_repeated_event_with_another_time_is_a_conflict(client: TestClient) -> None:
    answer = contact_decision(client, "reuse-time")
    url = f"/v1/decisions/{answer['decision_id']}/events"
    at = send_at(answer)
    first = {"kind": "opened", "event_id": "e-t", "occurred_at": at.isoformat()}
    assert client.post(url, json=first).json()["duplicate"] is False
    assert client.post(url, json=first).json()["duplicate"] is True
    assert client.post(url, json={"kind": "opened", "event_id": "e-t"}).json()["duplicate"]
    later = {**first, "occurred_at": (at + timedelta(minutes=5)).isoformat()}
    reused = client.post(url, json=later)
    assert reused.status_code == 409, reused.text
    assert reused.json()["problems"][0]["field"] == "event_id"
