"""The simulator and the demo: the loop runs end to end, and the cap checker can fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlmodel import col, select

from api.demo import priced_unsubscribes, run_demo
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import DecisionLog, Reward
from optimizer.core.catalog import CatalogSpec, ContactPolicySpec, Limit
from optimizer.simulator.metrics import count_cap_violations, uplift
from optimizer.simulator.run import SimulationConfig
from optimizer.simulator.truth import GroundTruth
from tests.optimizer.test_eligibility import snapshot_of

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def test_the_demo_runs_the_loop_and_writes_its_report(
    tmp_path: Path, example_catalog: CatalogSpec
) -> None:
    result = run_demo(
        catalog=example_catalog,
        out=tmp_path,
        config=SimulationConfig(customers=800, days=12, seed=3),
        register=False,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary, default=str))
    assert summary["decisions"] > 100
    assert summary["learned"] > 0
    assert summary["cap_violations"] == 0
    assert set(summary["conversion_rate"]) == {
        "policy",
        "uniform",
        "best_fixed",
        "oracle_within_limits",
        "oracle",
    }
    rates = summary["conversion_rate"]
    assert rates["uniform"] <= rates["oracle"]
    engine = create_engine_from_url(f"sqlite:///{result.database}")
    with session_scope(engine) as session:
        logged = session.exec(
            select(DecisionLog.frame_key, DecisionLog.reason, Reward.unsubscribed).join(
                Reward, col(Reward.decision_id) == DecisionLog.id, isouter=True
            )
        ).all()
    engine.dispose()
    frames = {f["key"]: f for f in summary["frames"]}
    assert sum(f["decisions"] for f in frames.values()) == summary["policy_decisions"]
    for key, frame in frames.items():
        mine = [(reason, unsubscribed) for k, reason, unsubscribed in logged if k == key]
        assert frame["decisions"] == sum(r in ("policy", "policy_no_contact") for r, _ in mine)
        assert frame["contacts"] == sum(r == "policy" for r, _ in mine)
        assert frame["unsubscribes"] == sum(r == "policy" and bool(u) for r, u in mine)
        assert 0.0 <= frame["offer_cost_per_decision"] <= frame["offer_spend"]
        if frame["unsubscribe_rate"] is not None:
            assert 0.0 <= frame["unsubscribe_rate"] <= 1.0
    assert set(summary["holdout_uplift"]) == {"value", "ci_low", "ci_high"}
    for name in (
        "report.html",
        "conversion_over_time.png",
        "holdout_uplift.png",
        "contacts_per_customer.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_cap_checker_finds_a_contact_beyond_the_channel_limit() -> None:
    policy = ContactPolicySpec(
        once_per_customer_days=1, min_gap_hours=0, channel_limits={"sms": Limit(max=2, days=7)}
    )
    ok = [
        ("c", "f", "sms", T0 + timedelta(days=d), T0 + timedelta(days=d), "reserved")
        for d in (0, 3, 8)
    ]
    assert count_cap_violations(ok, {"f": policy}) == 0
    crowded = [*ok, ("c", "g", "sms", T0 + timedelta(days=4), T0 + timedelta(days=9), "sent")]
    assert count_cap_violations(crowded, {"f": policy, "g": policy}) == 1
    failed = [*ok, ("c", "g", "sms", T0 + timedelta(days=4), T0 + timedelta(days=9), "failed")]
    assert count_cap_violations(failed, {"f": policy, "g": policy}) == 0


def test_truth_has_the_interactions_the_simulator_promises(example_catalog: CatalogSpec) -> None:
    snapshot = snapshot_of(example_catalog)
    truth = GroundTruth.for_snapshot(snapshot)
    annoyed = GroundTruth.for_snapshot(snapshot, annoyance=True)

    def rate(hc: str, offer: str, channel: str, slot: str) -> float:
        signature = next(
            s
            for s in snapshot.actions
            if s.startswith(f"{offer}|") and s.endswith(f"|{channel}|{slot}")
        )
        ids = np.array([snapshot.actions[signature]])
        return float(
            truth.take_rates(health_class=hc, trigger="health_c_to_d", action_ids=ids, noise=0.0)[0]
        )

    assert rate("D", "discount_3m", "email", "weekday_morning") > rate(
        "D", "no_incentive", "email", "weekday_morning"
    )
    assert rate("C", "content_recommendation", "app_push", "weekday_late_afternoon") > rate(
        "C", "content_recommendation", "app_push", "weekday_morning"
    )
    sms = next(a for s, a in snapshot.actions.items() if "|sms|" in s)
    assert truth.unsubscribe_rate(health_class="A", action_id=sms) > truth.unsubscribe_rate(
        health_class="D", action_id=sms
    )

    def unsubscribe(hc: str, channel: str, tone: str) -> float:
        action = next(
            a
            for s, a in snapshot.actions.items()
            if s.split("|")[2] == channel and snapshot.texts[s.split("|")[1]].tone == tone
        )
        return annoyed.unsubscribe_rate(health_class=hc, action_id=action)

    assert unsubscribe("A", "app_push", "urgent") > unsubscribe("A", "app_push", "friendly")
    assert unsubscribe("D", "app_push", "urgent") == unsubscribe("D", "app_push", "friendly")
    assert unsubscribe("A", "app_push", "friendly") > unsubscribe("A", "email", "friendly")
    assert annoyed.unsubscribe_rate(health_class="A", action_id=truth.no_contact_id) == 0.0


def test_a_priced_unsubscribe_reaches_the_rewards_the_learner_learns(
    tmp_path: Path, example_catalog: CatalogSpec
) -> None:
    result = run_demo(
        catalog=priced_unsubscribes(example_catalog, 5.0),
        out=tmp_path,
        config=SimulationConfig(customers=1500, days=20, seed=3, annoyance=True),
        register=False,
    )
    engine = create_engine_from_url(f"sqlite:///{result.database}")
    with session_scope(engine) as session:
        final = session.exec(
            select(Reward.unsubscribed, Reward.conversions, Reward.value).where(
                Reward.status == "final"
            )
        ).all()
    engine.dispose()
    unsubscribed = [(conversions, value) for flag, conversions, value in final if flag]
    assert unsubscribed, "no unsubscribe within a closed window: the check would be empty"
    assert all(value == (1.0 if n else 0.0) - 5.0 for n, value in unsubscribed)
    assert all(0.0 <= value <= 1.0 for flag, _, value in final if not flag)
    assert 0.0 < result.summary["expected_unsubscribes"] < result.summary["contacts"]


def test_uplift_interval_contains_the_difference() -> None:
    diff, low, high = uplift([True] * 30 + [False] * 70, [True] * 10 + [False] * 90)
    assert low < diff < high
    assert abs(diff - 0.2) < 1e-12
