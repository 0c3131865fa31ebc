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
