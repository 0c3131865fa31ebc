"""Two API replicas and two workers on one PostgreSQL and one MLflow tracking server, as on
several machines (the topology of `compose.yaml`).

The replicas (`campopt serve --no-scheduler`) take decisions and feedback, each for the other's
decisions; the workers (`campopt worker`) elect a leader through PostgreSQL, which finalises
rewards, learns and publishes to MLflow, from where both replicas reload the new weights. Then the
leader dies, the other worker takes over and carries on learning from the shared cursor. Finally a
data scientist trains a candidate and a manager approves it through a replica; both replicas serve
it. (The gate is configured to let any candidate through: this test is about the processes, the
gate's judgement is tested in `tests/api/test_lifecycle_e2e.py`.)
"""

from __future__ import annotations

import itertools
import random
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import select

from campaign_db.catalog import read_catalog
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import LearnerCheckpoint
from optimizer.registry import PolicyRegistry
from tests.system.cluster import (
    FAST_JOBS,
    ROOT,
    Process,
    free_port,
    newest_learnable_sequence,
    prepare_database,
    prepare_registry,
    server,
    tracking_server,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.slow

FRAME = "churn_prevention"
MINIMAL = ROOT / "tests" / "campaign_db" / "minimal_catalog.yaml"
CHANNELS = ["email", "sms", "app_inbox"]
TRUTH = {("free_month", "sms"): 0.5, ("free_month", "email"): 0.3}


def take_rate(action: dict[str, Any]) -> float:
    return TRUTH.get((action["offer"]["key"], action["channel"]), 0.05)


class Replicas:
    """Clients of the two API replicas; feedback goes to the replica that did not decide."""

    def __init__(self, ports: list[int], key: str, customers: list[str]) -> None:
        self.clients = [
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for port in ports
        ]
        self.customers = customers
        self.counter = itertools.count()
        self.lock = threading.Lock()

    def decide(self, i: int, now: datetime, *, replica: int | None = None) -> dict[str, Any]:
        client = self.clients[i % 2 if replica is None else replica]
        response = client.post(
            "/v1/decisions",
            json={
                "request_id": f"multi-{i}",
                "customer_id": self.customers[i % len(self.customers)],
                "trigger": "health_c_to_d",
                "channels": CHANNELS,
                "now": now.isoformat(),
            },
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def run(self, count: int, start: datetime, *, threads: int = 6) -> None:
        """`count` decisions a minute apart from `start`, with sends and conversions."""

        errors: list[BaseException] = []

        def work(seed: int) -> None:
            try:
                feed(seed)
            except BaseException as exc:
                errors.append(exc)

        def feed(seed: int) -> None:
            rng = random.Random(seed)
            while True:
                with self.lock:
                    i = next(self.counter)
                if i >= self.limit:
                    return
                answer = self.decide(i, start + timedelta(minutes=i))
                if not answer["contact"]:
                    continue
                other = self.clients[(i + 1) % 2]
                sent = other.post(
                    f"/v1/decisions/{answer['decision_id']}/events", json={"kind": "sent"}
                )
                assert sent.status_code == 200, sent.text
                if rng.random() < take_rate(answer["action"]):
                    send_at = datetime.fromisoformat(answer["action"]["send_time"]["send_at"])
                    converted = other.post(
                        "/v1/conversions",
                        json={
                            "conversion_id": f"conv-{i}",
                            "customer_id": answer["customer_id"],
                            "type": "stay",
                            "occurred_at": (send_at + timedelta(hours=2)).isoformat(),
                        },
                    )
                    assert converted.status_code in (200, 202), converted.text

        with self.lock:
            self.limit = next(self.counter) + count
            self.counter = itertools.count(self.limit - count)
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(300)
        if errors:
            raise errors[0]

    def serving_version(self, replica: int) -> str | None:
        """The policy version a fresh decision on `replica` used (None: a holdout answer)."""
        with self.lock:
            i = next(self.counter)
        # decided now: its window is open, so it does not feed the learner
        answer = self.decide(i, datetime.now(UTC), replica=replica)
        return str(answer["policy"]["version"]) if answer["policy"] else None

    def close(self) -> None:
        for client in self.clients:
            client.close()


def leader_pid(engine: Engine) -> int | None:
    """The process holding the scheduler's advisory lock in this test's database, from its
    connection's name (pg_locks shows the whole server's, other test runs' included)."""
    with engine.connect() as connection:
        name = connection.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            )
        ).scalar()
    return int(name.removeprefix("campopt-")) if name else None


def learned_to(engine: Engine) -> tuple[int, int]:
    """(newest checkpoint cursor, newest learnable final reward sequence)."""
    with session_scope(engine) as session:
        cursor = session.exec(select(func.coalesce(func.max(LearnerCheckpoint.cursor), 0))).one()
    return int(cursor), newest_learnable_sequence(engine)


def caught_up(engine: Engine, beyond: int = 0) -> bool:
    cursor, final = learned_to(engine)
    return final > beyond and cursor == final


def descends_from(registry: PolicyRegistry, serving: str | None, approved: str) -> bool:
    """Is `serving` the approved version, or an online version learned on top of it?"""
    seen = set()
    while serving is not None and serving.isdigit() and serving not in seen:
        if serving == approved:
            return True
        seen.add(serving)
        serving = registry.version_info(FRAME, serving).tags.get("campopt.parent_version")
    return False


def test_two_replicas_and_two_workers_decide_learn_fail_over_and_promote(
    postgres_databases: Any, tmp_path: Path
) -> None:
    url = postgres_databases.create()
    wall = datetime.now(UTC)
    customers = [f"m{i}" for i in range(1_500)]
    key = prepare_database(
        url,
        read_catalog(MINIMAL),
        customers,
        channels=CHANNELS,
        since=wall - timedelta(days=90),
        language="de",
    )
    mlflow_port = free_port()
    mlflow = tracking_server(tmp_path, port=mlflow_port).start()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    env = {
        **FAST_JOBS,
        "CAMPOPT_DATABASE_URL": url,
        "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
        "CAMPOPT_DATA_DIR": str(tmp_path),
        # the gate itself is tested elsewhere; here any trained candidate may pass it
        "CAMPOPT_GATE_MIN_EFFECTIVE_SAMPLE_SIZE": "1",
        "CAMPOPT_GATE_MIN_LIFT": "-1",
    }
    ports = [free_port(), free_port()]
    apis = [
        server(tmp_path, env, port=port, workers=1, scheduler=False, name=f"api{n}")
        for n, port in enumerate(ports)
    ]
    workers = [Process(f"worker{n}", ["worker"], env, tmp_path) for n in range(2)]
    engine = create_engine_from_url(url)
    replicas = Replicas(ports, key, customers)
    try:
        wait_ready(mlflow_port, mlflow, path="/health")
        prepare_registry(tracking, tmp_path / "mlartifacts")
        for process in (*apis, *workers):
            process.start()
        for port, api in zip(ports, apis, strict=True):
            wait_ready(port, api)
        leader = wait_for(lambda: leader_pid(engine), timeout=60, what="a leading worker")
        assert leader in {w.pid for w in workers}

        # decisions and feedback through both replicas; the leader learns and publishes
        replicas.run(1_200, wall - timedelta(days=40))
        wait_for(lambda: caught_up(engine), timeout=120, what="the leader to learn everything")
        for n in (0, 1):
            wait_for(
                lambda n=n: replicas.serving_version(n) not in (None, "0"),
                timeout=60,
                what=f"replica {n} to serve learned weights",
            )

        # the leader dies; the other worker takes the lead and learns what comes next
        cursor_before, _ = learned_to(engine)
        dead = next(w for w in workers if w.pid == leader)
        survivor = next(w for w in workers if w.pid != leader)
        dead.kill()
        wait_for(
            lambda: leader_pid(engine) == survivor.pid, timeout=60, what="the other worker to lead"
        )
        replicas.run(300, wall - timedelta(days=35))
        wait_for(
            lambda: caught_up(engine, beyond=cursor_before),
            timeout=120,
            what="the new leader to learn the new rewards",
        )

        # a candidate is trained offline and a manager approves it through a replica
        trained = subprocess.run(
            [sys.executable, "-m", "api.cli", "policy", "train", "--frame", FRAME],
            env={**survivor.env, "COLUMNS": "200"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trained.returncode == 0, trained.stdout + trained.stderr
        match = re.search(rf"registered {FRAME}:(\S+)", trained.stdout)
        assert match, trained.stdout
        version = match.group(1)
        approved = replicas.clients[1].post(
            f"/v1/policies/{FRAME}:{version}/approve", json={"reason": "campaign review"}
        )
        assert approved.status_code == 200, approved.text + "\n" + trained.stdout
        assert approved.json()["action"] == "policy.approve"
        # the leader takes the approved model over, replays the rewards after its training
        # cut-off and publishes the continuation: a replica serves the one or the other
        registry = PolicyRegistry(tracking, artifact_root=tmp_path / "mlartifacts")
        for n in (0, 1):
            wait_for(
                lambda n=n: descends_from(registry, replicas.serving_version(n), version),
                timeout=60,
                what=f"replica {n} to serve the approved version {version} or its continuation",
            )
        audit = replicas.clients[0].get("/v1/audit", params={"action": "policy.approve"})
        assert audit.status_code == 200, audit.text
        assert any(e["subject"] == f"{FRAME}:{version}" for e in audit.json())
    except BaseException:
        for process in (*apis, *workers, mlflow):
            print(f"--- {process.name}\n{process.log_tail()}")
        raise
    finally:
        replicas.close()
        for process in (*apis, *workers, mlflow):
            process.stop()
        engine.dispose()
