"""SIGKILL the server in the middle of a load run, restart it, and count.

A server with two workers (one of them leading the jobs: finalisation, learning, checkpoints)
takes decisions, delivery events and conversions from eight clients. Once the learner has written
a checkpoint, the whole process group is killed with SIGKILL while requests are in flight. After a
restart: every acknowledged decision and conversion is in the database; the requests that got no
answer are retried with the same request id and get exactly one decision; no decision reserved
more than one contact; and the learner resumed from its cursor: each policy's newest checkpoint
has learned every final reward up to its cursor exactly once.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import col, select

from campaign_db import learning
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import ContactHistory, Conversion, DecisionLog, LearnerCheckpoint, Reward
from optimizer.core.catalog import CatalogSpec
from tests.api.test_decisions_api import CHANNELS
from tests.system.cluster import (
    FAST_JOBS,
    Process,
    free_port,
    newest_learnable_sequence,
    prepare_database,
    prepare_registry,
    server,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.slow

CUSTOMERS = 3_000
CLIENTS = 8


class Load:
    """Clients that decide, report sends and conversions, and remember what was acknowledged."""

    def __init__(self, port: int, key: str, customers: list[str], start: datetime) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.customers = customers
        self.start = start
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.decisions: dict[str, dict[str, Any]] = {}  # request id → answer
        self.conversions: set[str] = set()
        self.unanswered: list[dict[str, Any]] = []
        self.interrupted = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]

    def body(self, i: int) -> dict[str, Any]:
        return {
            "request_id": f"crash-{i}",
            "customer_id": self.customers[i % len(self.customers)],
            "trigger": "health_c_to_d",
            "channels": CHANNELS,
            "now": (self.start + timedelta(seconds=30 * i)).isoformat(),
        }

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as client:
            while not self.stop.is_set():
                body = self.body(next(self.counter))
                try:
                    response = client.post("/v1/decisions", json=body)
                except httpx.TransportError:
                    with self.lock:
                        self.unanswered.append(body)
                        self.interrupted += 1
                    return
                assert response.status_code == 200, response.text
                answer = response.json()
                with self.lock:
                    self.decisions[body["request_id"]] = answer
                if not answer["contact"]:
                    continue
                try:
                    self._feedback(client, answer, rng)
                except httpx.TransportError:
                    with self.lock:
                        self.interrupted += 1
                    return

    def _feedback(self, client: httpx.Client, answer: dict[str, Any], rng: random.Random) -> None:
        sent = client.post(f"/v1/decisions/{answer['decision_id']}/events", json={"kind": "sent"})
        assert sent.status_code == 200, sent.text
        if rng.random() < 0.5:
            return
        send_at = datetime.fromisoformat(answer["action"]["send_time"]["send_at"])
        conversion_id = f"conv-{answer['decision_id']}"
        response = client.post(
            "/v1/conversions",
            json={
                "conversion_id": conversion_id,
                "customer_id": answer["customer_id"],
                "type": "stay",
                "value": 9.99,
                "occurred_at": (send_at + timedelta(hours=1)).isoformat(),
            },
        )
        assert response.status_code in (200, 202), response.text
        with self.lock:
            self.conversions.add(conversion_id)

    def begin(self) -> None:
        for thread in self.threads:
            thread.start()

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def checkpointed(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.coalesce(func.max(LearnerCheckpoint.cursor), 0))).one())


def learnable_up_to(engine: Engine, policy: str, cursor: int) -> int:
    """Final rewards of `policy`'s decisions with a sequence up to `cursor`."""
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Reward)
                .join(DecisionLog, col(DecisionLog.id) == col(Reward.decision_id))
                .where(
                    Reward.status == "final",
                    col(Reward.sequence) <= cursor,
                    DecisionLog.policy_name == policy,
                    col(DecisionLog.reason).in_(("policy", "policy_no_contact")),
                )
            ).one()
        )


@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_sigkill_mid_load_loses_nothing_acknowledged(
    fresh_database_url: tuple[str, str], example_catalog: CatalogSpec, tmp_path: Path
) -> None:
    _backend, url = fresh_database_url
    wall = datetime.now(UTC)
    customers = [f"k{i}" for i in range(CUSTOMERS)]
    key = prepare_database(
        url, example_catalog, customers, channels=CHANNELS, since=wall - timedelta(days=90)
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_registry(tracking, tmp_path / "mlartifacts")
    env = {
        **FAST_JOBS,
        "CAMPOPT_DATABASE_URL": url,
        "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
        "CAMPOPT_DATA_DIR": str(tmp_path),
    }
    port = free_port()
    engine = create_engine_from_url(url)
    # decisions a month ago: their attribution windows have closed, so rewards finalise now
    load = Load(port, key, customers, start=wall - timedelta(days=40))
    first: Process | None = None
    second: Process | None = None
    try:
        first = server(tmp_path, env, port=port, workers=2, scheduler=True, name="before")
        wait_ready(port, first.start())
        load.begin()
        wait_for(lambda: checkpointed(engine) > 0, timeout=120, what="a learner checkpoint")
        wait_for(lambda: len(load.decisions) >= 600, timeout=120, what="600 decisions")
        cursor_before = checkpointed(engine)
        first.kill()
        load.end()
        assert load.interrupted, "the kill should have caught requests in flight"

        second = server(tmp_path, env, port=port, workers=2, scheduler=True, name="after")
        wait_ready(port, second.start())
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=load.headers, timeout=30
        ) as client:
            for body in load.unanswered:
                retry = client.post("/v1/decisions", json=body)
                assert retry.status_code == 200, retry.text
        wait_for(
            lambda: (
                (n := newest_learnable_sequence(engine)) > cursor_before
                and checkpointed(engine) == n
            ),
            timeout=120,
            what="the learner to catch up after the restart",
        )
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()

    acknowledged = {uuid.UUID(a["decision_id"]): r for r, a in load.decisions.items()}
    with session_scope(engine) as session:
        logged = dict(
            session.exec(select(DecisionLog.id, DecisionLog.request_id)).all()  # type: ignore[call-overload]
        )
        contacts_per_decision = session.exec(
            select(ContactHistory.decision_id, func.count()).group_by(
                col(ContactHistory.decision_id)
            )
        ).all()
        conversions = set(session.exec(select(Conversion.conversion_id)).all())
        checkpoints = learning.latest_checkpoints(session)
    try:
        for policy in checkpoints:
            assert policy.examples_learned == learnable_up_to(
                engine, policy.policy_name, policy.cursor
            )
    finally:
        engine.dispose()

    assert all(logged.get(d) == r for d, r in acknowledged.items()), "acknowledged decision lost"
    assert load.conversions <= conversions, "acknowledged conversion lost"
    request_ids = list(logged.values())
    assert len(request_ids) == len(set(request_ids))
    assert {b["request_id"] for b in load.unanswered} <= set(request_ids)
    assert max(n for _, n in contacts_per_decision) == 1
    contacts = sum(1 for a in load.decisions.values() if a["contact"])
    assert sum(n for d, n in contacts_per_decision if d in acknowledged) == contacts
    assert max(c.cursor for c in checkpoints) > cursor_before
