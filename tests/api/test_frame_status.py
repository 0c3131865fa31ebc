"""The frame status shows live spend against the frame's offer-cost limit, and drift."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from optimizer.core.values import utcnow
from optimizer.policy import BanditPolicy
from tests.optimizer.helpers import serve_churn_decisions
from tests.optimizer.test_drift import stream


def test_frame_status_shows_offer_cost_per_decision_against_the_limit(client: Any) -> None:
    services = client.app.state.services
    answers = serve_churn_decisions(
        services.engine, customers_n=10, start=utcnow() - timedelta(hours=2)
    )
    served = [a for a in answers if a.reason.value in ("policy", "policy_no_contact")]
    cost = sum(a.action.offer.cost for a in served if a.action is not None)

    response = client.get("/v1/frames/churn_prevention/status")

    assert response.status_code == 200, response.text
    spend = response.json()["spend"]
    assert spend["max_offer_cost_per_decision"] == 8.0
    assert spend["decisions"] == len(served)
    assert abs(spend["offer_cost"] - cost) < 1e-6
    assert abs(spend["offer_cost_per_decision"] - cost / len(served)) < 1e-6
    assert spend["window_days"] == 7.0


def test_frame_status_without_decisions_has_no_spend_rate(client: Any) -> None:
    spend = client.get("/v1/frames/upsell/status").json()["spend"]
    assert spend["decisions"] == 0
    assert spend["offer_cost_per_decision"] is None


def test_frame_status_says_when_the_serving_policy_found_drift(client: Any) -> None:
    services = client.app.state.services
    snapshot, _ = services.catalog.current()
    frame = next(f for f in snapshot.frames if f.key == "churn_prevention")
    before = client.get("/v1/frames/churn_prevention/status").json()["drift"]
    assert before == {"drifting": False, "since_reward": None, "alarms": 0}

    policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key, version="online-1")
    stream(policy, 3_000, seed=1)
    stream(policy, 300, seed=2, flipped=True)
    assert policy.drifting
    services.policies.install(policy)

    drift = client.get("/v1/frames/churn_prevention/status").json()["drift"]
    assert drift["drifting"] is True
    assert drift["alarms"] == 1
    assert drift["since_reward"] > 3_000


def test_frame_status_shows_each_budget_against_its_limit_and_plan(
    client: Any, example_catalog: Any
) -> None:
    from campaign_db.catalog import load_catalog
    from campaign_db.engine import session_scope
    from optimizer.core.catalog import BudgetSpec

    services = client.app.state.services
    budget = BudgetSpec(key="contacts", limit=3, period="week")
    frames = [
        f.model_copy(update={"budgets": [budget]}) if f.key == "churn_prevention" else f
        for f in example_catalog.frames
    ]
    with session_scope(services.engine, write=True) as session:  # a budget narrows: at once
        load_catalog(
            session,
            catalog=example_catalog.model_copy(update={"frames": frames}),
            source="budget",
            actor="test",
        )
    services.catalog.refresh()
    answers = serve_churn_decisions(services.engine, customers_n=10, start=utcnow())

    response = client.get("/v1/frames/churn_prevention/status")

    assert response.status_code == 200, response.text
    [shown] = response.json()["budgets"]
    assert shown["key"] == "contacts"
    assert shown["limit"] == 3
    assert shown["spent"] == sum(a.contact for a in answers) <= 3
    assert 0 <= shown["planned"] <= 3
    assert shown["price"] >= 0
    assert shown["period"] == "week"
    assert client.get("/v1/frames/upsell/status").json()["budgets"] == []
