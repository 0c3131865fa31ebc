"""1,000 concurrent decision requests for the same 10 customers never break a contact cap.

Two API processes decide at once (SQLite: one server with two workers; PostgreSQL: two servers
on two ports), so no lock inside a process can be what keeps the caps: the database must.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import create_engine_from_url
from optimizer.core.catalog import CatalogSpec
from optimizer.simulator.metrics import count_cap_violations
from tests.api.test_decisions_api import CHANNELS, NOW, not_in_holdout
from tests.system.cluster import (
    FAST_JOBS,
    Process,
    free_port,
    prepare_database,
    prepare_registry,
    server,
    wait_ready,
)

pytestmark = pytest.mark.slow

REQUESTS = 1_000


async def _decide_all(ports: list[int], key: str, customers: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=120) as client:

        async def one(i: int) -> httpx.Response:
            body = {
                "request_id": f"burst-{i}",
                "customer_id": customers[i % len(customers)],
                "trigger": "health_c_to_d",
                "channels": CHANNELS,
                "now": NOW,
            }
            port = ports[i % len(ports)]
            return await client.post(f"http://127.0.0.1:{port}/v1/decisions", json=body)

        # open the connections first, so that the burst reaches both processes at once
        await asyncio.gather(
            *(client.get(f"http://127.0.0.1:{ports[i % len(ports)]}/healthz") for i in range(400))
        )
        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_burst_at_ten_customers_contacts_each_exactly_once(
    fresh_database_url: tuple[str, str], example_catalog: CatalogSpec, tmp_path: Path
) -> None:
    backend, url = fresh_database_url
    customers = [not_in_holdout(f"burst-{n}-") for n in range(10)]
    key = prepare_database(
        url,
        example_catalog,
        customers,
        channels=CHANNELS,
        since=datetime(2026, 10, 1, tzinfo=UTC),
        health_classes="D",
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_registry(tracking, tmp_path / "mlartifacts")
    env = {
        **FAST_JOBS,
        "CAMPOPT_DATABASE_URL": url,
        "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
        "CAMPOPT_DATA_DIR": str(tmp_path),
    }
    processes: list[Process] = []
    ports: list[int] = []
    layout = [2] if backend == "sqlite" else [1, 1]
    try:
        for n, workers in enumerate(layout):
            port = free_port()
            processes.append(
                server(
                    tmp_path, env, port=port, workers=workers, scheduler=False, name=f"api{n}"
                ).start()
            )
            ports.append(port)
        for port, process in zip(ports, processes, strict=True):
            wait_ready(port, process)
        responses = asyncio.run(_decide_all(ports, key, customers))
    finally:
        for process in processes:
            process.stop()

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: REQUESTS}, statuses
    answers: list[dict[str, Any]] = [r.json() for r in responses]
    contacted = Counter(a["customer_id"] for a in answers if a["contact"])
    engine = create_engine_from_url(url)
    try:
        contacts = SqlDecisionLogs(engine).contacts()
    finally:
        engine.dispose()
    policies = {f.key: f.contact_policy for f in example_catalog.frames}
    assert count_cap_violations(contacts, policies) == 0
    # once_per_customer_days is 21: one contact each, and every customer did get one
    assert Counter(c[0] for c in contacts) == dict.fromkeys(customers, 1)
    assert contacted == dict.fromkeys(customers, 1)
