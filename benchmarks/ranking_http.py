"""HTTP rankings on loopback: `campopt serve` with two workers, 3 slots over 100 combinations.

A fresh database (SQLite file, or a fresh PostgreSQL database on the local server) with the
pull catalog of `benchmarks.ranking_latency`, a trained champion in a local MLflow store, and
an aiohttp client in a separate process (keep-alive, `--concurrency` clients) posting
`/v1/rankings` for `--seconds`. Reports rankings/s, latency percentiles and statuses, then
counts that every acknowledged ranking is in the log.

    python -m benchmarks.ranking_http [--seconds 30] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, text
from sqlmodel import col, select

from api.auth import create_key
from benchmarks.http_load import NOW, POSTGRES_ADMIN, register_champion
from benchmarks.ranking_latency import pull_catalog
from campaign_db import migrate
from campaign_db.catalog import load_catalog
from campaign_db.customers import add_customers
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import RankingLog
from optimizer.core.catalog import CatalogSpec

CUSTOMERS = 5_000


def prepare(url: str) -> str:
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    ids = [f"c{i}" for i in range(CUSTOMERS)]
    with session_scope(engine, write=True) as session:
        load_catalog(
            session,
            catalog=CatalogSpec.model_validate(pull_catalog()),
            source="bench",
            actor="bench",
        )
        add_customers(
            session,
            customers=[
                {
                    "id": c,
                    "health_class": "ABCD"[i % 4],
                    "usage_index": (i % 10) / 10,
                    "time_zone": "Europe/Berlin",
                    "language": "en",
                }
                for i, c in enumerate(ids)
            ],
            consents=[(c, "portal") for c in ids],
            now=NOW,
        )
    key = create_key(engine, name="bench", scopes=["decide", "simulate"], actor="bench")[1]
    engine.dispose()
    return key


async def _drive(port: int, key: str, seconds: float, concurrency: int, tag: str, out: str) -> None:
    import aiohttp

    counter = iter(range(10**9))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{port}/v1/rankings"
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            while time.perf_counter() < deadline:
                i = next(counter)
                body = {
                    "request_id": f"{tag}-{i}",
                    "customer_id": f"c{i % CUSTOMERS}",
                    "trigger": "page_view",
                    "channel": "portal",
                    "slots": 3,
                    "now": NOW.isoformat(),
                }
                start = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status = 0
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    Path(out).write_text(
        json.dumps({"latencies": latencies, "statuses": statuses, "elapsed": elapsed})
    )


def _load(port: int, key: str, seconds: float, concurrency: int, tag: str, out: str) -> None:
    import uvloop

    uvloop.run(_drive(port, key, seconds, concurrency, tag, out))


def _wait_ready(port: int, timeout: float = 90.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not start")


def run(backend: str, seconds: float, concurrency: int, port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database = None
        if backend == "sqlite":
            url = f"sqlite:///{folder / 'bench.db'}"
        else:
            database = f"campopt_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{database}"'))
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        key = prepare(url)
        tracking = f"sqlite:///{folder / 'mlflow.db'}"
        register_champion(url, tracking, folder / "mlartifacts")
        env = {
            **os.environ,
            "CAMPOPT_DATABASE_URL": url,
            "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
            "CAMPOPT_DATA_DIR": str(folder),
        }
        command = [sys.executable, "-m", "api.cli", "serve", "--workers", "2"]
        command += ["--port", str(port), "--no-scheduler"]
        server = subprocess.Popen(command, env=env)
        out = folder / "load.json"
        try:
            _wait_ready(port)
            _load(port, key, 3.0, concurrency, "warm", str(folder / "warm.json"))
            process = mp.get_context("spawn").Process(
                target=_load, args=(port, key, seconds, concurrency, "load", str(out))
            )
            process.start()
            process.join()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        result = json.loads(out.read_text())
        engine = create_engine_from_url(url)
        with session_scope(engine) as session:
            logged = session.exec(
                select(func.count())
                .select_from(RankingLog)
                .where(col(RankingLog.request_id).startswith("load-"))
            ).one()
            versions = session.exec(select(RankingLog.policy_version).distinct()).all()
        engine.dispose()
        if database is not None:
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    latencies = np.asarray(result["latencies"])
    ok = int(result["statuses"].get("200", 0))
    return {
        "rankings_per_s": ok / result["elapsed"],
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "statuses": result["statuses"],
        "logged": int(logged),
        "acknowledged": ok,
        "policy_versions": sorted(str(v) for v in versions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--port", type=int, default=8775)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    figures = run(args.backend, args.seconds, args.concurrency, args.port)
    table = Table(title=f"HTTP rankings, 2 workers, {args.backend}, 3 slots over 100")
    for column in ("rankings/s", "p50 ms", "p99 ms", "statuses", "logged / acknowledged"):
        table.add_column(column)
    table.add_row(
        f"{figures['rankings_per_s']:,.0f}",
        f"{figures['p50_ms']:.1f}",
        f"{figures['p99_ms']:.1f}",
        json.dumps(figures["statuses"]),
        f"{figures['logged']:,} / {figures['acknowledged']:,}",
    )
    Console().print(table)
    Console().print(f"policy versions served: {figures['policy_versions']}")


if __name__ == "__main__":
    main()
