"""The policy lifecycle end to end on a simulated run, told by the audit log.

A small world with a known truth (the minimal catalog: about nine candidates per decision; a free
month by SMS converts best, a usage tip hardly at all) is logged under a uniform policy. On it: a
deliberately bad champion serves; a candidate that leaves its frame waits for a manager's approval
and is promoted after it; it is rolled back; a candidate inside the frame is promoted
automatically; a worse one is rejected with its reasons; a forced guardrail breach trips the kill
switch and rolls the champion back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from api.auth import create_key
from api.container import build_container
from api.settings import Settings
from campaign_db import migrate
from campaign_db.audit import SqlAuditLog
from campaign_db.catalog import load_catalog, read_catalog
from campaign_db.customers import add_customers
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.governance import SqlGovernanceStore
from campaign_db.learning import SqlLearningStore
from campaign_db.models import ContactHistory
from campaign_db.rewards import SqlRewardStore
from optimizer.core.decision import DecisionAsk
from optimizer.core.policy_spec import PolicySpec
from optimizer.errors import ConflictError
from optimizer.feedback import ConversionReport, EventReport, record_conversions, record_events
from optimizer.guardrails import GuardrailMonitor
from optimizer.offline import DecisionLogs, load_decision_logs, train_policies
from optimizer.ports.decision_logs import LogFilters
from optimizer.publishing import make_serving
from tests.api.cockpit_data import sign_in

FRAME = "churn_prevention"
MINIMAL = Path(__file__).resolve().parents[1] / "campaign_db" / "minimal_catalog.yaml"
START = datetime(2026, 11, 2, 9, tzinfo=UTC)
TRUTH = {
    ("free_month", "sms"): 0.5,
    ("free_month", "email"): 0.3,
    ("free_month", "app_inbox"): 0.25,
}


def take_rate(action: Any) -> float:
    if action is None:
        return 0.02
    return TRUTH.get((action.offer.key, action.channel), 0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """1,600 decisions logged under the uniform policy, with conversions by the truth above."""
    out = tmp_path_factory.mktemp("lifecycle")
    settings = Settings(
        data_dir=out,
        database_url=f"sqlite:///{out / 'campopt.db'}",
        mlflow_tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
        scheduler_enabled=False,
        gate_min_effective_sample_size=20,
        catalog_check_seconds=0.0,
    )
    engine = create_engine_from_url(settings.database_url)
    migrate.upgrade(engine)
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(MINIMAL), source="minimal", actor="test")
        ids = [f"w{i}" for i in range(1600)]
        add_customers(
            session,
            customers=[
                {
                    "id": c,
                    "health_class": "CD"[i % 2],
                    "usage_index": 0.2,
                    "time_zone": "Europe/Berlin",
                    "language": "de",
                }
                for i, c in enumerate(ids)
            ],
            consents=[(c, ch) for c in ids for ch in ("email", "sms", "app_inbox")],
            now=START,
        )
    services = build_container(settings.model_copy(update={"mlflow_tracking_uri": "disabled"}))
    rng = np.random.default_rng(4)
    futures = [
        services.decisions.submit(
            DecisionAsk(
                request_id=f"r{i}",
                customer_id=c,
                trigger="health_c_to_d",
                channels=["email", "sms", "app_inbox"],
                now=START + timedelta(minutes=i),
            )
        )
        for i, c in enumerate(ids)
    ]
    answers = [f.result() for f in futures]
    record_events(
        SqlFeedbackStore(engine),
        events=[(a.decision_id, EventReport(kind="sent")) for a in answers if a.contact],
    )
    conversions = [
        ConversionReport(
            conversion_id=f"c-{a.decision_id}",
            customer_id=a.customer_id,
            kind="stay",
            occurred_at=(a.action.send_time.send_at if a.action else a.decided_at)
            + timedelta(hours=3),
        )
        for a in answers
        if a.reason.value != "holdout" and rng.random() < take_rate(a.action)
    ]
    record_conversions(SqlFeedbackStore(engine), conversions=conversions)
    from optimizer.rewards import finalize_due

    finalize_due(SqlRewardStore(engine), now=START + timedelta(days=40))
    services.close()
    return settings


def register_bad_champion(services: Any) -> str:
    """A policy trained on the earlier half of the logs to prefer what does not convert, put in
    service as the champion."""
    snapshot, lines = services.catalog.current()
    logs = load_decision_logs(
        SqlDecisionLogs(services.engine), snapshot, LogFilters(frame_key=FRAME)
    )
    earlier, _, cut_off = logs.split_by_sequence(0.5)
    flipped = DecisionLogs(
        data=earlier.data.with_reward(1.0 - earlier.data.reward, reward_range=(0.0, 1.0)),
        contexts=earlier.contexts,
        sequences=earlier.sequences,
    )
    frame = next(f for f in snapshot.frames if f.key == FRAME)
    policy = train_policies(flipped, {FRAME: frame.spec.policy_spec()}, lines)[FRAME]
    version = services.source.register(
        policy,
        action_lines={s: lines[a] for s, a in snapshot.actions.items()},
        floor_share=0.05,
        source="test",
        tags={"cursor": str(cut_off)},
    )
    make_serving(
        SqlLearningStore(services.engine),
        services.source,
        name=FRAME,
        version=version,
        cursor=cut_off,
        source="promotion",
        actor="test",
    )
    return str(version)


def tighten_guardrails(engine: Any, folder: Path) -> list[str]:
    data = yaml.safe_load(MINIMAL.read_text())
    frame = data["frames"][0]
    del frame["approval"]
    frame["guardrails"] = {"min_decisions": 10, "max_unsubscribe_rate": 0.001}
    path = folder / "tight.yaml"
    path.write_text(yaml.safe_dump(data))
    with session_scope(engine, write=True) as session:
        return load_catalog(
            session, catalog=read_catalog(path), source="tight", actor="crm"
        ).approvals


def test_the_whole_lifecycle(world: Settings) -> None:
    engine = create_engine_from_url(world.database_url)
    admin = create_key(engine, name="ops", scopes=["admin"], actor="test")[1]
    manager = create_key(engine, name="m.keller", scopes=["approve", "read_logs"], actor="test")[1]
    analyst = create_key(engine, name="analyst", scopes=["read_logs"], actor="test")[1]

    with TestClient(create_app(world)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        lifecycle = services.lifecycle()
        client.headers["Authorization"] = f"Bearer {admin}"
        as_manager = {"Authorization": f"Bearer {manager}"}
        v_bad = register_bad_champion(services)

        # a better candidate that leaves its frame (epsilon 0.4 > max_epsilon 0.3) waits
        wide = lifecycle.train(
            FRAME, spec=PolicySpec(name=FRAME, algorithm="epsilon_greedy", epsilon=0.4), actor="ds"
        )
        assert wide.gate.verdict == "needs_approval", wide.gate
        assert any("max_epsilon" in r for r in wide.gate.reasons)
        refused = client.post(
            f"/v1/policies/{FRAME}:{wide.version}/approve",
            json={},
            headers={"Authorization": f"Bearer {analyst}"},
        )
        assert refused.status_code == 403
        with pytest.raises(Exception, match="needs a manager's approval"):
            lifecycle.promote(FRAME, wide.version, actor="ds", reason="try")
        sign_in(client, manager)
        inbox = client.get("/ui/approvals").text
        assert f'data-policy="{FRAME}:{wide.version}"' in inbox
        assert f"/ui/policies/{FRAME}/{wide.version}/approve" in inbox
        approved = client.post(
            f"/v1/policies/{FRAME}:{wide.version}/approve",
            json={"reason": "wider exploration for the winter campaign"},
            headers=as_manager,
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["replaced"] == v_bad
        assert services.source.serving_version(FRAME) == wide.version
        assert f'data-policy="{FRAME}:{wide.version}"' not in client.get("/ui/approvals").text

        # rolled back through the API to what the approval replaced
        rolled = client.post(
            "/v1/policies/rollback", json={"policy": FRAME, "reason": "back"}, headers=as_manager
        )
        assert rolled.status_code == 200, rolled.text
        assert services.source.serving_version(FRAME) == v_bad

        # the scheduled job trains the frame's own spec and promotes it on its own
        (outcome,) = lifecycle.train_and_promote_all(actor="scheduler")
        assert (outcome.gate, outcome.promoted) == ("promote", True), outcome
        v_good = outcome.version
        assert services.source.serving_version(FRAME) == v_good

        # the bad version, evaluated against the new champion, is rejected with its reasons
        worse = lifecycle.evaluate(FRAME, v_bad, actor="ds")
        assert worse.gate.verdict == "reject"
        assert any("lift" in r for r in worse.gate.reasons)
        conflict = client.post(f"/v1/policies/{FRAME}:{v_bad}/approve", json={}, headers=as_manager)
        assert conflict.status_code == 409
        assert "failed its promotion gate" in conflict.json()["problems"][0]["message"]

        # a marketer tightens the guardrails (narrowing: active at once), customers unsubscribe
        assert any("narrows" in a for a in tighten_guardrails(engine, Path(world.data_dir)))
        services.catalog.refresh(force=True)
        with session_scope(engine) as session:
            decision_ids = list(session.exec(select(ContactHistory.decision_id).limit(30)).all())
        assert len(decision_ids) == 30
        record_events(
            SqlFeedbackStore(engine),
            events=[
                (d, EventReport(kind="unsubscribed", event_id=f"forced-{i}"))
                for i, d in enumerate(decision_ids)
            ],
        )
        snapshot, _ = services.catalog.current()
        guardrails = GuardrailMonitor(SqlGovernanceStore(engine), SqlAuditLog(engine))
        (health,) = guardrails.monitor(
            list(snapshot.frames),
            rollback=lifecycle.rollback,
            now=START + timedelta(days=2),
        )
        assert health.mode == "safe"
        assert any("unsubscribe rate" in b for b in health.breaches)
        assert services.source.serving_version(FRAME) == v_bad  # what v_good's promotion replaced
        status = client.get(f"/v1/frames/{FRAME}/status").json()
        assert status["mode"] == "safe"
        assert "unsubscribe rate" in status["mode_reason"]

        # in safe mode, with no safe default in the frame, nobody is contacted
        answer = services.decisions.decide(
            DecisionAsk(
                request_id="after-breach",
                customer_id="w1",
                trigger="health_c_to_d",
                channels=["email", "sms", "app_inbox"],
                now=START + timedelta(days=60),
            )
        )
        assert answer.contact is False

        # the audit log tells the story
        chronological = [e["action"] for e in reversed(client.get("/v1/audit?limit=500").json())]
        cursor = 0
        for action in (
            "policy.train",
            "policy.approve",
            "policy.rollback",
            "policy.train",
            "policy.promote",
            "policy.evaluate",
            "frame.narrow",
            "policy.rollback",
            "frame.kill_switch",
        ):
            assert action in chronological[cursor:], (action, chronological)
            cursor = chronological.index(action, cursor) + 1
        approval = client.get("/v1/audit?action=policy.approve").json()[0]
        assert approval["actor"] == "m.keller"
        assert approval["details"]["reason"] == "wider exploration for the winter campaign"
        kill = client.get("/v1/audit?action=frame.kill_switch").json()[0]
        assert kill["details"]["rollback"] == v_bad


def test_versions_are_evaluated_only_after_their_training_cutoff(world: Settings) -> None:
    with TestClient(create_app(world)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        lifecycle = services.lifecycle()

        # a trained candidate records its cut-off, and its evidence starts after it
        trained = lifecycle.train(FRAME, actor="ds")
        tags = services.source.version_info(FRAME, trained.version).tags
        cutoff = datetime.fromisoformat(tags["campopt.trained_until"])
        evaluated_from = datetime.fromisoformat(tags["campopt.data_from"]).replace(tzinfo=UTC)
        assert cutoff < evaluated_from
        assert int(tags["campopt.trained_rows"]) + int(tags["campopt.evaluated_rows"]) <= 1600

        # a version trained on every decision has nothing left to be evaluated on
        snapshot, lines = services.catalog.current()
        logs = load_decision_logs(
            SqlDecisionLogs(services.engine), snapshot, LogFilters(frame_key=FRAME)
        )
        frame = next(f for f in snapshot.frames if f.key == FRAME)
        policy = train_policies(logs, {FRAME: frame.spec.policy_spec()}, lines)[FRAME]
        everything = services.source.register(
            policy,
            action_lines={s: lines[a] for s, a in snapshot.actions.items()},
            floor_share=0.05,
            source="offline",
            tags=logs.cutoff().to_tags(),
        )
        with pytest.raises(ConflictError, match="no later decision has a final reward"):
            lifecycle.evaluate(FRAME, str(everything), actor="ds")
