"""The frame status shows live spend against the frame's offer-cost limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from optimizer.core.values import utcnow
from tests.optimizer.helpers import serve_churn_decisions


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
