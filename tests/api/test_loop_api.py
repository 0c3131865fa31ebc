"""The learning loop through the API: events, conversions, rewards, usage and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.engine import session_scope
from campaign_db.models import Consent, Conversion, Outbox, Reward
from campaign_db.rewards import SqlRewardStore
from optimizer.rewards import finalize_due
from tests.api.test_decisions_api import add_customer, decide_until_contact, not_in_holdout

DECIDED = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)


def reward_of(engine: Engine, decision_id: str) -> Reward:
    import uuid

    with session_scope(engine) as session:
        reward = session.get(Reward, uuid.UUID(decision_id))
        assert reward is not None
        return reward


def contact_decision(client: TestClient, name: str) -> dict[str, Any]:
    customer = not_in_holdout(f"{name}-")
    add_customer(client, customer)
    return dict(decide_until_contact(client, f"{name}-req", customer).json())


def send_at(answer: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(answer["action"]["send_time"]["send_at"])


def conversion(
    client: TestClient, conversion_id: str, customer: str, at: datetime, value: float = 9.99
) -> Any:
    return client.post(
        "/v1/conversions",
        json={
            "conversion_id": conversion_id,
            "customer_id": customer,
            "type": "subscription",
            "value": value,
            "occurred_at": at.isoformat(),
        },
    )


def test_conversion_in_the_window_is_attributed_once(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "conv")
    customer = answer["customer_id"]
    when = send_at(answer) + timedelta(days=2)
    first = conversion(client, "c-1", customer, when)
    assert first.status_code == 202
    assert first.json()["status"] == "attributed"
    assert first.json()["decision_id"] == answer["decision_id"]
    again = conversion(client, "c-1", customer, when)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert reward_of(loaded_engine, answer["decision_id"]).conversions == 1


def test_conversion_before_sending_or_after_the_window_is_not_attributed(
    client: TestClient,
) -> None:
    answer = contact_decision(client, "early")
    customer = answer["customer_id"]
    before = conversion(client, "c-early", customer, send_at(answer) - timedelta(hours=1)).json()
    after = conversion(client, "c-after", customer, send_at(answer) + timedelta(days=8)).json()
    assert (before["status"], after["status"]) == ("unattributed", "unattributed")


def test_unknown_customer_conversion_is_stored_unattributed(
    client: TestClient, loaded_engine: Engine
) -> None:
    response = conversion(client, "c-nobody", "nobody", DECIDED)
    assert response.status_code == 202
    assert response.json()["status"] == "unattributed"
    with session_scope(loaded_engine) as session:
        assert session.get(Conversion, "c-nobody") is not None


def test_pending_reward_is_never_final_early_and_late_conversions_are_counted(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "late")
    decision_id = answer["decision_id"]
    client.post(f"/v1/decisions/{decision_id}/events", json={"kind": "sent"})
    report = finalize_due(SqlRewardStore(loaded_engine), now=send_at(answer) + timedelta(days=6))
    assert report.total == 0
    assert reward_of(loaded_engine, decision_id).status == "pending"

    finalize_due(SqlRewardStore(loaded_engine), now=send_at(answer) + timedelta(days=8))
    reward = reward_of(loaded_engine, decision_id)
    assert (reward.status, reward.value) == ("final", 0.0)
    late = conversion(client, "c-late", answer["customer_id"], send_at(answer) + timedelta(days=3))
    assert late.json()["status"] == "late"
    reward = reward_of(loaded_engine, decision_id)
    assert (reward.value, reward.late_conversions) == (0.0, 1)


def test_converted_contact_earns_one_and_unsent_contact_is_void(
    client: TestClient, loaded_engine: Engine
) -> None:
    converted = contact_decision(client, "good")
    client.post(f"/v1/decisions/{converted['decision_id']}/events", json={"kind": "delivered"})
    conversion(client, "c-good", converted["customer_id"], send_at(converted) + timedelta(days=1))
    never_sent = contact_decision(client, "unsent")
    finalize_due(SqlRewardStore(loaded_engine), now=DECIDED + timedelta(days=30))
    assert reward_of(loaded_engine, converted["decision_id"]).value == 1.0
    void = reward_of(loaded_engine, never_sent["decision_id"])
    assert (void.status, void.sequence) == ("void", None)


def test_unsubscribe_is_a_guardrail_signal_and_revokes_consent(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "unsub")
    response = client.post(
        f"/v1/decisions/{answer['decision_id']}/events",
        json={"kind": "unsubscribed", "event_id": "e-1"},
    )
    assert response.status_code == 200
    assert reward_of(loaded_engine, answer["decision_id"]).unsubscribed is True
    with session_scope(loaded_engine) as session:
        consent = session.get(Consent, (answer["customer_id"], answer["action"]["channel"]))
        assert consent is not None
        assert consent.granted is False
    repeat = client.post(
        f"/v1/decisions/{answer['decision_id']}/events",
        json={"kind": "unsubscribed", "event_id": "e-1"},
    )
    assert repeat.json()["duplicate"] is True


def test_direct_reward_replaces_attribution_and_is_range_checked(
    client: TestClient, loaded_engine: Engine
) -> None:
    answer = contact_decision(client, "direct")
    decision_id = answer["decision_id"]
    bad = client.post(f"/v1/decisions/{decision_id}/reward", json={"value": 3})
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["field"] == "value"
    ok = client.post(f"/v1/decisions/{decision_id}/reward", json={"value": 1})
    assert ok.status_code == 200
    client.post(f"/v1/decisions/{decision_id}/events", json={"kind": "sent"})
    finalize_due(SqlRewardStore(loaded_engine), now=DECIDED + timedelta(days=30))
    assert reward_of(loaded_engine, decision_id).value == 1.0
    unknown = client.post(
        "/v1/decisions/01a20000-0000-7000-8000-000000000000/reward", json={"value": 1}
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "teleported"}, "kind"),
        ({"kind": "sent", "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
    ],
)
def test_bad_events_name_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    answer = contact_decision(client, "badevent")
    response = client.post(f"/v1/decisions/{answer['decision_id']}/events", json=body)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == field


def test_worsening_class_emits_its_outbox_decision_once(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("usage-")
    add_customer(client, customer, health_class="C")
    response = client.post(
        f"/v1/customers/{customer}/usage",
        json={
            "recency_days": 30,
            "sessions_30d": 0,
            "minutes_30d": 0,
            "observed_at": "2026-11-23T09:00:00Z",
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["previous_class"], result["health_class"], result["trigger"]) == (
        "C",
        "D",
        "health_c_to_d",
    )
    assert result["decision_id"] is not None
    same = client.post(
        f"/v1/customers/{customer}/usage",
        json={
            "recency_days": 31,
            "sessions_30d": 0,
            "minutes_30d": 0,
            "observed_at": "2026-11-24T09:00:00Z",
        },
    ).json()
    assert same["trigger"] is None

    with session_scope(loaded_engine) as session:
        queued = session.exec(select(Outbox).where(Outbox.customer_id == customer)).all()
    record = client.get(f"/v1/decisions/{result['decision_id']}").json()
    expected = 1 if record["answer"]["contact"] else 0
    assert len(queued) == expected
    if expected:
        channel = queued[0].channel_key
        items = client.get(f"/v1/outbox?channel={channel}&limit=10").json()
        assert [i["decision_id"] for i in items] == [result["decision_id"]]
        assert client.get(f"/v1/outbox?channel={channel}&limit=10").json() == []  # leased
        ack = client.post("/v1/outbox/ack", json={"ids": [items[0]["outbox_id"], 999_999]}).json()
        assert ack == {"acked": [items[0]["outbox_id"]], "unknown": [999_999]}
        assert reward_of(loaded_engine, result["decision_id"]).sent is True


def test_usage_for_unknown_customer_is_404_and_bad_usage_names_the_field(
    client: TestClient,
) -> None:
    assert (
        client.post(
            "/v1/customers/ghost/usage",
            json={"recency_days": 1, "sessions_30d": 1, "minutes_30d": 1},
        ).status_code
        == 404
    )
    add_customer(client, "u-bad")
    response = client.post(
        "/v1/customers/u-bad/usage", json={"recency_days": -1, "sessions_30d": 1, "minutes_30d": 1}
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "recency_days"
