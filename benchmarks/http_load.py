"""HTTP load on loopback: 32 concurrent clients, 100 candidates, in three layouts.

Sets up a database (fresh SQLite file, or a fresh PostgreSQL database on the local server) with
the synthetic 100-candidate catalog and enough customers that every request sees the full
candidate set, registers a trained champion in a local MLflow store, starts the API, drives it
(wrk, or aiohttp in a separate process; keep-alive connections) and reports decisions/s, latency
percentiles and errors. Afterwards it counts that every acknowledged decision is in the log.

Layouts: `echo` (a bare FastAPI app with two workers that validates the request and echoes it,
`benchmarks.echo_app`: the ceiling of the HTTP stack in the same run, touching no database),
`single` (one `campopt serve` process: the baseline), `workers` (one server with two worker
processes) and `replicas` (two `campopt serve --no-scheduler` on two ports, as behind a load
balancer; the clients are split between them). The replicas need PostgreSQL.

    python -m benchmarks.http_load [--seconds 60] [--backend sqlite|postgresql|both]
        [--layout echo,single,workers,replicas]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, text
from sqlmodel import col, select

from api.auth import create_key
from benchmarks.synthetic_catalog import synthetic_catalog
from campaign_db import migrate
from campaign_db.catalog import load_catalog
from campaign_db.customers import add_customers
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import DecisionLog
from optimizer.core.catalog import CatalogSpec

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def prepare_database(url: str, customers: int) -> None:
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    catalog = CatalogSpec.model_validate(synthetic_catalog(100))
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=catalog, source="bench", actor="bench")
    batch = 20_000
    for start in range(0, customers, batch):
        ids = [f"c{i}" for i in range(start, min(start + batch, customers))]
        with session_scope(engine, write=True) as session:
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
                consents=[(c, ch.key) for c in ids for ch in catalog.channels],
                now=NOW,
            )
    engine.dispose()


def register_champion(url: str, tracking_uri: str, artifacts: Path) -> None:
    """Train the frame's policy on random feedback and make it the champion."""
    from campaign_db.catalog import SqlCatalogReader
    from campaign_db.learning import SqlLearningStore
    from optimizer.features import shared_line
    from optimizer.policy import BanditPolicy
    from optimizer.publishing import make_serving
    from optimizer.registry import CHAMPION, PolicyRegistry
    from optimizer.serving import CatalogCache

    engine = create_engine_from_url(url)
    snapshot, lines = CatalogCache(SqlCatalogReader(engine)).current()
    frame = snapshot.frames[0]
    policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key, version="bench")
    ids = sorted(snapshot.actions.values())
    action_lines = [lines[a] for a in ids]
    rng = np.random.default_rng(0)
    for _ in range(500):
        context = {
            "health_class": "ABCD"[int(rng.integers(4))],
            "usage_index": rng.random(),
            "language": "en",
            "trigger": "bench",
            "hour": 12,
            "weekday": 0,
        }
        policy.learn(
            shared_line(context),
            action_lines,
            chosen=int(rng.integers(len(ids))),
            reward=float(rng.random() < 0.1),
            probability=1 / len(ids),
        )
    registry = PolicyRegistry(tracking_uri, artifact_root=artifacts)
    signatures = {sig: lines[i] for sig, i in snapshot.actions.items()}
    version = registry.register(
        policy, action_lines=signatures, floor_share=0.05, source="benchmark", alias=CHAMPION
    )
    # serving loads what the serving record names, not what the alias says
    make_serving(
        SqlLearningStore(engine),
        registry,
        name=frame.key,
        version=version,
        cursor=0,
        source="benchmark",
        actor="bench",
    )
    engine.dispose()


async def _drive(
    ports: list[int], key: str, seconds: float, concurrency: int, offset: int, out: str
) -> None:
    import aiohttp

    counter = iter(range(offset, 10**9))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acknowledged: list[str] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client(url: str) -> None:
            while time.perf_counter() < deadline:
                i = next(counter)
                body = {
                    "request_id": f"load-{i}",
                    "customer_id": f"c{i}",
                    "trigger": "bench",
                    "channels": ["channel_0"],
                    "now": NOW.isoformat(),
                }
                start = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        payload = await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status = 0
                    payload = b""
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    acknowledged.append(json.loads(payload)["decision_id"])

        started = time.perf_counter()
        await asyncio.gather(
            *(
                client(f"http://127.0.0.1:{ports[n % len(ports)]}/v1/decisions")
                for n in range(concurrency)
            )
        )
        elapsed = time.perf_counter() - started
    Path(out).write_text(
        json.dumps(
            {
                "latencies": latencies,
                "statuses": statuses,
                "acknowledged": acknowledged,
                "elapsed": elapsed,
            }
        )
    )


def _load_process(
    ports: list[int], key: str, seconds: float, concurrency: int, offset: int, out: str
) -> None:
    import uvloop

    uvloop.run(_drive(ports, key, seconds, concurrency, offset, out))


WRK_SCRIPT = """
local thread_counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", thread_counter)
  thread_counter = thread_counter + 1
  table.insert(threads, thread)
end

function init(args)
  span = tonumber(args[1])
  now = args[2]
  key = args[3]
  first = tonumber(args[4])
  n = 0
end

function request()
  local lane = first + tid
  local customer = lane * span + n
  n = n + 1
  local body = string.format(
    '{"request_id":"wrk-%d-%d","customer_id":"c%d","trigger":"bench",' ..
    '"channels":["channel_0"],"now":"%s"}', lane, n, customer, now)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  return wrk.format("POST", "/v1/decisions", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _start_wrk(
    port: int,
    seconds: float,
    connections: int,
    threads: int,
    first_lane: int,
    span: int,
    key: str,
    script: Path,
) -> subprocess.Popen[str]:
    """wrk with `threads` lanes of request ids and customers, from lane `first_lane` on."""
    return subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(span),
            NOW.isoformat(),
            key,
            str(first_lane),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _run_wrk(
    ports: list[int], seconds: float, concurrency: int, span: int, key: str, folder: Path
) -> dict[str, Any]:
    """One wrk per port, run at once; the clients and the two lanes are split between them."""
    script = folder / "decisions.lua"
    script.write_text(WRK_SCRIPT)
    threads = max(1, LANES // len(ports))
    runs = [
        _start_wrk(
            port, seconds, concurrency // len(ports), threads, n * threads, span, key, script
        )
        for n, port in enumerate(ports)
    ]
    results = []
    for run in runs:
        stdout, _ = run.communicate()
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed: {stdout}")
        line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    total = {k: sum(r[k] for r in results) for k in results[0]}
    total["duration_us"] = max(r["duration_us"] for r in results)
    # percentiles do not add up: the median of the medians, the worst of the p99s
    total["p50_us"] = float(np.median([r["p50_us"] for r in results]))
    total["p99_us"] = max(r["p99_us"] for r in results)
    return total


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


LAYOUTS = {
    # name: (servers, worker processes per server, scheduler)
    "echo": (1, 2, False),
    "single": (1, 1, True),
    "workers": (1, 2, True),
    "replicas": (2, 1, False),
}
LANES = 2


def run_echo(seconds: float, concurrency: int, port: int) -> dict[str, Any]:
    """The bare echo app under the same wrk load: what the HTTP stack alone allows."""
    command = [sys.executable, "-m", "uvicorn", "benchmarks.echo_app:create_app", "--factory"]
    command += ["--workers", "2", "--port", str(port), "--log-level", "warning"]
    command += ["--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    server = subprocess.Popen(command)
    try:
        _wait_ready(port)
        with tempfile.TemporaryDirectory() as tmp:
            wrk = _run_wrk([port], seconds, concurrency, 10**6, "none", Path(tmp))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    errors = sum(wrk[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "backend": "-",
        "layout": "echo",
        "decisions_per_s": (wrk["requests"] - wrk["status"]) / (wrk["duration_us"] / 1e6),
        "p50": wrk["p50_us"] / 1e3,
        "p99": wrk["p99_us"] / 1e3,
        "errors": errors,
        "acknowledged": wrk["requests"] - wrk["status"],
        "in_log": "-",
    }


def _serving_pids(pid: int) -> list[int]:
    """The process and its worker processes (uvicorn spawns them as children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(c) for c in children.read_text().split()] if children.exists() else []
    return found or [pid]


_PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}") or "py-spy"


def _start_profiles(
    servers: list[subprocess.Popen[bytes]], seconds: float, folder: Path
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every serving process for the middle of the run: which thread holds the GIL
    where (`benchmarks.profile_summary` reads the files)."""
    folder.mkdir(parents=True, exist_ok=True)
    duration = str(max(1, int(seconds * 0.6)))
    options = ["--duration", duration, "--rate", "97", "--nonblocking", "--gil", "--format", "raw"]
    return [
        subprocess.Popen(
            [_PY_SPY, "record", "--pid", str(pid), *options, "-o", str(folder / f"{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for server in servers
        for pid in _serving_pids(server.pid)
    ]


def run(
    backend: str,
    layout: str,
    seconds: float,
    concurrency: int,
    port: int,
    client: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    if layout == "echo":
        return run_echo(seconds, concurrency, port)
    servers, workers, scheduler = LAYOUTS[layout]
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
        span = int(seconds * 3000) + 10_000
        customers = LANES * span + 20_000
        prepare_database(url, customers)
        engine = create_engine_from_url(url)
        key = create_key(engine, name="bench", scopes=["decide", "simulate"], actor="bench")[1]
        engine.dispose()
        tracking = f"sqlite:///{folder / 'mlflow.db'}"
        register_champion(url, tracking, folder / "mlartifacts")
        env = {
            **os.environ,
            "CAMPOPT_DATABASE_URL": url,
            "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
            "CAMPOPT_DATA_DIR": str(folder),
        }
        ports = [port + n for n in range(servers)]
        processes = []
        for p in ports:
            command = [sys.executable, "-m", "api.cli", "serve"]
            command += ["--workers", str(workers), "--port", str(p)]
            if not scheduler:
                command.append("--no-scheduler")
            processes.append(subprocess.Popen(command, env=env))
        try:
            for p in ports:
                _wait_ready(p)
            warm = folder / "warm.json"
            _load_process(ports, key, 3.0, concurrency, LANES * span, str(warm))
            if client == "wrk":
                spies = []
                if profile is not None:
                    threading.Timer(
                        seconds * 0.2,
                        lambda: spies.extend(
                            _start_profiles(processes, seconds, profile / f"{backend}-{layout}")
                        ),
                    ).start()
                wrk = _run_wrk(ports, seconds, concurrency, span, key, folder)
                for spy in spies:
                    spy.wait(timeout=60)
            else:
                out = folder / "load.json"
                process = mp.get_context("spawn").Process(
                    target=_load_process, args=(ports, key, seconds, concurrency, 0, str(out))
                )
                process.start()
                process.join()
        finally:
            for server in processes:
                server.send_signal(signal.SIGTERM)
            for server in processes:
                server.wait(timeout=60)
        engine = create_engine_from_url(url)
        if client == "wrk":
            errors = sum(wrk[k] for k in ("connect", "read", "write", "status", "timeout"))
            elapsed = wrk["duration_us"] / 1e6
            acknowledged_count = wrk["requests"] - wrk["status"]
            with session_scope(engine) as session:
                found = session.exec(
                    select(func.count())
                    .select_from(DecisionLog)
                    .where(col(DecisionLog.request_id).startswith("wrk-"))
                ).one()
                versions = session.exec(
                    select(DecisionLog.policy_version)
                    .distinct()
                    .where(col(DecisionLog.request_id).startswith("wrk-"))
                ).all()
            if versions != ["1"]:
                print(f"warning: decided by policy versions {versions}, not the champion (1)")
            p50, p99 = wrk["p50_us"] / 1e3, wrk["p99_us"] / 1e3
        else:
            result = json.loads(out.read_text())
            acknowledged = [uuid.UUID(x) for x in result["acknowledged"]]
            acknowledged_count = len(acknowledged)
            found = 0
            with session_scope(engine) as session:
                for start in range(0, len(acknowledged), 5000):
                    chunk = acknowledged[start : start + 5000]
                    found += session.exec(
                        select(func.count())
                        .select_from(DecisionLog)
                        .where(col(DecisionLog.id).in_(chunk))
                    ).one()
            latencies = np.asarray(result["latencies"]) * 1e3
            p50, p99 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))
            errors = sum(n for status, n in result["statuses"].items() if status != "200")
            elapsed = result["elapsed"]
        engine.dispose()
        if database is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
            admin.dispose()
    return {
        "backend": backend,
        "layout": layout,
        "decisions_per_s": acknowledged_count / elapsed,
        "p50": p50,
        "p99": p99,
        "errors": errors,
        "acknowledged": acknowledged_count,
        "in_log": found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--layout",
        default="echo,single,workers,replicas",
        help="comma-separated: echo, single, workers, replicas (replicas only on PostgreSQL; "
        "echo, which needs wrk, runs once)",
    )
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk (C, apt install wrk) leaves the cores to the server; python uses aiohttp",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record a py-spy GIL profile of every serving process into DIR (wrk only)",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    layouts = [x.strip() for x in args.layout.split(",") if x.strip()]
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"--layout: unknown {', '.join(sorted(unknown))}")
    table = Table(
        title=f"HTTP decisions, {args.concurrency} clients, {args.seconds:g} s, 100 candidates"
    )
    for column in (
        "database",
        "layout",
        "decisions/s",
        "vs single",
        "vs echo",
        "p50 ms",
        "p99 ms",
        "errors",
        "acknowledged",
        "in log",
    ):
        table.add_column(column, justify="right")
    echo = None
    if "echo" in layouts:
        if args.client != "wrk":
            parser.error("--layout echo needs wrk")
        r = run_echo(args.seconds, args.concurrency, args.port)
        echo = r["decisions_per_s"]
        table.add_row(
            "-",
            "echo",
            f"{echo:.0f}",
            "-",
            "1.00x",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            str(r["errors"]),
            str(r["acknowledged"]),
            "-",
        )
    for backend in backends:
        baseline = None
        for layout in layouts:
            if layout == "echo" or (layout == "replicas" and backend == "sqlite"):
                continue
            r = run(
                backend,
                layout,
                args.seconds,
                args.concurrency,
                args.port,
                args.client,
                profile=args.py_spy,
            )
            if layout == "single":
                baseline = r["decisions_per_s"]
            ratio = f"{r['decisions_per_s'] / baseline:.2f}x" if baseline else "-"
            table.add_row(
                r["backend"],
                layout,
                f"{r['decisions_per_s']:.0f}",
                ratio,
                f"{r['decisions_per_s'] / echo:.2f}x" if echo else "-",
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                str(r["errors"]),
                str(r["acknowledged"]),
                str(r["in_log"]),
            )
    Console().print(table)


if __name__ == "__main__":
    main()
