"""The decision API end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, DecisionLog

NOW = "2026-11-23T10:15:00+01:00"  # a Monday morning in Berlin
CHANNELS = ["email", "sms", "app_push", "app_inbox", "letter", "web_portal"]


def add_customer(
    client: TestClient,
    customer_id: str,
    *,
    health_class: str = "D",
    consents: list[str] | None = None,
    language: str = "en",
) -> None:
    response = client.put(
        f"/v1/customers/{customer_id}",
        json={
            "health_class": health_class,
            "usage_index": 0.2,
            "language": language,
            "time_zone": "Europe/Berlin",
            "customer_since": "2024-05-01",
        },
    )
    assert response.status_code in (200, 201), response.text
    for channel in CHANNELS if consents is None else consents:
        response = client.put(
            f"/v1/customers/{customer_id}/consents/{channel}", json={"granted": True}
        )
        assert response.status_code == 200, response.text


def decide(client: TestClient, request_id: str, customer_id: str, **extra: Any) -> Any:
    body = {
        "request_id": request_id,
        "customer_id": customer_id,
        "trigger": "health_c_to_d",
        "channels": CHANNELS,
        "now": NOW,
        **extra,
    }
    return client.post("/v1/decisions", json=body)


def decide_until_contact(client: TestClient, prefix: str, customer_id: str, **extra: Any) -> Any:
    """The policy may choose no_contact (probability 1/K before learning); ask again then."""
    for attempt in range(20):
        response = decide(client, f"{prefix}-{attempt}", customer_id, **extra)
        assert response.status_code == 200, response.text
        if response.json()["contact"]:
            return response
    raise AssertionError("twenty no_contact choices in a row")


def not_in_holdout(prefix: str, frame: str = "churn_prevention", share: float = 0.05) -> str:
    from optimizer.eligibility import in_holdout

    i = 0
    while in_holdout(f"{prefix}{i}", salt=frame, share=share):
        i += 1
    return f"{prefix}{i}"


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_decision_answers_with_a_combination_inside_the_frame(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("alice-")
    add_customer(client, customer)
    answer = decide_until_contact(
        client, "req-1", customer, personalisation={"first_name": "Ada"}
    ).json()
    assert answer["contact"] is True
    assert answer["reason"] == "policy"
    action = answer["action"]
    assert action["offer"]["key"] in {
        "free_month",
        "discount_3m",
        "content_recommendation",
        "no_incentive",
    }
    assert action["text"]["language"] == "en"
    assert "{first_name}" not in action["text"]["body"]
    assert action["send_time"]["send_at"].endswith("+01:00")
    assert 0 < answer["probability"] <= 1
    assert answer["policy"] == {"name": "churn_prevention", "version": "0"}
    assert answer["frame"] == {"key": "churn_prevention", "version": 1}
    assert answer["probability"] == pytest.approx(
        1 / answer["candidates"]
    )  # uniform before learning
    assert count(loaded_engine, ContactHistory) == 1


def test_repeated_request_id_returns_the_same_answer_and_one_contact(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("bob-")
    add_customer(client, customer)
    first = decide(client, "req-same", customer).json()
    second = decide(client, "req-same", customer).json()
    assert first == second
    assert count(loaded_engine, ContactHistory) == 1
    assert count(loaded_engine, DecisionLog) == 1


def test_reusing_a_request_id_for_another_customer_is_a_conflict(client: TestClient) -> None:
    add_customer(client, "carol")
    add_customer(client, "dave")
    decide(client, "req-shared", "carol")
    response = decide(client, "req-shared", "dave")
    assert response.status_code == 409
    assert response.json()["problems"][0]["field"] == "request_id"


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"channels": ["email"]}, "channels"),
        ({"trigger": "cancellation_requested"}, "trigger"),
        ({"context": {"segment": "family"}}, "context"),
    ],
)
def test_reusing_a_request_id_with_a_different_body_is_a_conflict_naming_what_differs(
    client: TestClient, loaded_engine: Engine, change: dict[str, Any], differs: str
) -> None:
    customer = not_in_holdout("reuser-")
    add_customer(client, customer)
    first = decide(client, "req-reused", customer)
    assert first.status_code == 200, first.text
    response = decide(client, "req-reused", customer, **change)
    assert response.status_code == 409, response.text
    problem = response.json()["problems"][0]
    assert problem["field"] == "request_id"
    assert differs in problem["message"]
    assert count(loaded_engine, DecisionLog) == 1


def test_a_retry_later_or_spelling_the_body_differently_gets_the_stored_answer(
    client: TestClient,
) -> None:
    customer = not_in_holdout("retrier-")
    add_customer(client, customer)
    first = decide(client, "req-retried", customer, context={"a": 1, "b": "x"})
    assert first.status_code == 200, first.text
    again = decide(
        client,
        "req-retried",
        customer,
        channels=list(reversed(CHANNELS)),
        context={"b": "x", "a": 1},
        now="2026-11-23T09:20:00Z",
        personalisation={"first_name": "Ada"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["decision_id"] == first.json()["decision_id"]


def test_logged_decision_explains_itself(client: TestClient) -> None:
    customer = not_in_holdout("erin-")
    add_customer(client, customer, consents=["email"])
    answer = decide(client, "req-log", customer).json()
    record = client.get(f"/v1/decisions/{answer['decision_id']}").json()
    assert record["answer"] == answer
    probabilities = [c["probability"] for c in record["candidates"]]
    assert sum(probabilities) == pytest.approx(1.0)
    chosen = (
        answer["action"]["action_id"]
        if answer["contact"]
        else record["candidates"][-1]["action_id"]
    )
    assert record["chosen_action_id"] == chosen
    assert record["eligibility_trace"]["channel:sms"] == "no consent"
    assert record["context"]["health_class"] == "D"
    assert record["seed"] > 0


def test_revoked_consent_holds_for_the_very_next_decision(client: TestClient) -> None:
    customer = not_in_holdout("frank-")
    add_customer(client, customer, consents=["email"])
    client.put(f"/v1/customers/{customer}/consents/email", json={"granted": False})
    answer = decide(client, "req-after-revoke", customer).json()
    assert answer["contact"] is False
    assert answer["reason"] == "nothing_eligible"
    assert answer["excluded"]["channel:email"] == "no consent"


def test_contact_cap_turns_the_next_request_into_no_contact(client: TestClient) -> None:
    customer = not_in_holdout("gina-")
    add_customer(client, customer)
    decide_until_contact(client, "req-a", customer)
    second = decide(client, "req-b", customer).json()
    assert second["contact"] is False
    assert second["reason"] == "nothing_eligible"
    assert any("campaign already contacted" in reason for reason in second["excluded"].values())


def test_holdout_customers_get_no_contact_and_are_logged(
    client: TestClient, loaded_engine: Engine
) -> None:
    from optimizer.eligibility import in_holdout

    customer = next(
        f"h-{i}" for i in range(10_000) if in_holdout(f"h-{i}", salt="churn_prevention", share=0.05)
    )
    add_customer(client, customer)
    answer = decide(client, "req-holdout", customer).json()
    assert (answer["contact"], answer["reason"]) == (False, "holdout")
    assert count(loaded_engine, ContactHistory) == 0
    assert count(loaded_engine, DecisionLog) == 1


def test_no_frame_for_the_customers_class_is_a_logged_no_contact(client: TestClient) -> None:
    add_customer(client, "healthy", health_class="A")
    answer = decide(client, "req-healthy", "healthy").json()
    assert answer["reason"] == "nothing_eligible"
    assert "serves health classes CD" in answer["excluded"]["frame:churn_prevention"]


BAD_REQUESTS = [
    ("unknown_trigger", {"trigger": "birthday"}, 422, "trigger"),
    ("unknown_channel", {"channels": ["email", "fax"]}, 422, "channels[1]"),
    ("malformed_customer_id", {"customer_id": "a b"}, 422, "customer_id"),
    ("malformed_request_id", {"request_id": ""}, 422, "request_id"),
    ("wrong_type", {"channels": "email"}, 422, "channels"),
    ("now_without_time_zone", {"now": "2026-11-23T10:15:00"}, 422, "now"),
    ("now_in_year_1", {"now": "0001-01-01T00:00:00Z"}, 422, "now"),
    # the schema says date-time: a Unix time of this very moment is still refused
    ("now_as_a_unix_time", {"now": int(time.time())}, 422, "now"),
    ("now_as_a_string_of_digits", {"now": str(int(time.time()))}, 422, "now"),
    ("now_in_year_9999", {"now": "9999-12-31T23:59:59Z"}, 422, "now"),
    ("now_past_year_9999_in_utc", {"now": "9999-12-31T23:00:00-05:00"}, 422, "now"),
    ("unknown_field", {"colour": "blue"}, 422, "colour"),
    ("unknown_customer", {"customer_id": "nobody"}, 404, "customer_id"),
    ("no_channels", {"channels": []}, 422, "channels"),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "field"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_json_naming_the_field(
    client: TestClient, case: str, change: dict[str, Any], status: int, field: str
) -> None:
    add_customer(client, "known")
    body = {
        "request_id": f"bad-{case}",
        "customer_id": "known",
        "trigger": "health_c_to_d",
        "channels": ["email"],
        **change,
    }
    response = client.post("/v1/decisions", json=body)
    assert response.status_code == status, response.text
    problems = response.json()["problems"]
    assert field in [p["field"] for p in problems]


def test_malformed_json_and_oversized_bodies_are_4xx_json(client: TestClient) -> None:
    response = client.post(
        "/v1/decisions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "body"
    response = client.post(
        "/v1/decisions",
        content=b"[" + b"1," * 50_000 + b"1]",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["problems"][0]["field"] == "body"
    response = client.get("/v1/decisions/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "decision_id"
    assert client.get("/v1/decisions/01a20000-0000-7000-8000-000000000000").status_code == 404


def test_bad_customer_profiles_are_refused(client: TestClient) -> None:
    for body, field in (
        ({"health_class": "E"}, "health_class"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"language": "xx"}, "language"),
        ({"usage_index": 3}, "usage_index"),
        ({"signup_at": "2024-03-01"}, "signup_at"),
    ):
        response = client.put("/v1/customers/x1", json=body)
        assert response.status_code == 422, body
        assert response.json()["problems"][0]["field"] == field
    assert client.put("/v1/customers/x1/consents/email", json={"granted": True}).status_code == 404
    add_customer(client, "x2", consents=[])
    response = client.put("/v1/customers/x2/consents/fax", json={"granted": True})
    assert response.status_code == 404


def test_out_of_range_now_fails_only_its_own_request_among_concurrent_ones(
    client: TestClient, loaded_engine: Engine
) -> None:
    customers = [not_in_holdout(f"batch-{n}-") for n in range(8)]
    for customer in customers:
        add_customer(client, customer)
    bad_times = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
    jobs = [(f"good-{i}", customers[i % len(customers)], NOW) for i in range(60)]
    jobs += [(f"bad-{i}", customers[i % len(customers)], bad_times[i % 2]) for i in range(8)]
    jobs = jobs[::2] + jobs[1::2]  # bad ones spread among the good ones
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda job: decide(client, job[0], job[1], now=job[2]), jobs))
    for (request_id, _, _), response in zip(jobs, responses, strict=True):
        if request_id.startswith("good-"):
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 422, response.text
            assert response.json()["problems"][0]["field"] == "now"
    assert count(loaded_engine, DecisionLog) == 60


def _key_client(client: TestClient, engine: Engine, scopes: list[str]) -> TestClient:
    from api.auth import create_key

    key = create_key(engine, name="-".join(scopes), scopes=scopes, actor="tests")[1]
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def test_a_decide_key_cannot_backdate_now_to_escape_the_caps(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("backdater-")
    add_customer(client, customer)
    _key_client(client, loaded_engine, ["decide"])
    server = datetime.now(UTC)
    for days in range(1, 6):
        for sign in (-1, 1):
            response = decide(
                client,
                f"shifted-{sign}-{days}",
                customer,
                now=(server + sign * timedelta(days=days)).isoformat(),
            )
            assert response.status_code == 422, response.text
            problem = response.json()["problems"][0]
            assert problem["field"] == "now"
            assert "simulate" in problem["message"]
    assert count(loaded_engine, ContactHistory) == 0
    assert count(loaded_engine, DecisionLog) == 0


def test_a_decide_key_may_pass_a_now_within_the_skew_or_none(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("punctual-")
    add_customer(client, customer)
    _key_client(client, loaded_engine, ["decide"])
    close = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
    assert decide(client, "close", customer, now=close).status_code == 200
    body = {
        "request_id": "no-now",
        "customer_id": customer,
        "trigger": "health_c_to_d",
        "channels": CHANNELS,
    }
    assert client.post("/v1/decisions", json=body).status_code == 200


def test_a_simulate_key_may_decide_at_another_time(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("simulated-")
    add_customer(client, customer)
    _key_client(client, loaded_engine, ["decide", "simulate"])
    response = decide(client, "simulated", customer, now="2026-02-02T10:00:00+01:00")
    assert response.status_code == 200, response.text
    assert response.json()["decided_at"].startswith("2026-02-02T09:00:00")
