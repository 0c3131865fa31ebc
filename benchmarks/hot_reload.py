"""How long after the `champion` alias moves do all serving processes answer with the new version?

Starts `campopt serve` (2 workers, default reload interval) on the 100-candidate synthetic
catalog, registers version A as champion, waits until every answer carries A, moves the alias to
B and polls decisions every 100 ms until every worker answers with B.

    python -m benchmarks.hot_reload [--reload-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.http_load import _wait_ready, prepare_database

PORT = 8766


def _decide(key: str, i: int) -> str:
    body = json.dumps(
        {
            "request_id": f"hot-{i}",
            "customer_id": f"c{i}",
            "trigger": "bench",
            "channels": ["channel_0"],
            "now": "2026-11-23T12:00:00+00:00",
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/v1/decisions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    return str((answer.get("policy") or {}).get("version"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reload-seconds", type=float, default=30.0)
    args = parser.parse_args()
    from api.auth import create_key
    from campaign_db.catalog import SqlCatalogReader
    from campaign_db.engine import create_engine_from_url
    from optimizer.policy import BanditPolicy
    from optimizer.registry import CHAMPION, PolicyRegistry
    from optimizer.serving import CatalogCache

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'db.sqlite'}"
        prepare_database(url, 50_000)
        engine = create_engine_from_url(url)
        key = create_key(engine, name="bench", scopes=["admin"], actor="bench")[1]
        snapshot, lines = CatalogCache(SqlCatalogReader(engine)).current()
        frame = snapshot.frames[0]
        tracking = f"sqlite:///{folder / 'mlflow.db'}"
        registry = PolicyRegistry(tracking, artifact_root=folder / "artifacts")
        action_lines = {s: lines[a] for s, a in snapshot.actions.items()}

        def version(seed: int) -> str:
            policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key)
            ids = sorted(snapshot.actions.values())
            for i in range(50):
                policy.learn(
                    "shared |c hc_A",
                    [lines[a] for a in ids],
                    chosen=(i + seed) % len(ids),
                    reward=1.0,
                    probability=1 / len(ids),
                )
            return registry.register(
                policy, action_lines=action_lines, floor_share=0.05, source="bench"
            )

        first, second = version(1), version(2)
        registry.set_alias(frame.key, CHAMPION, first)
        env = {
            **os.environ,
            "CAMPOPT_DATABASE_URL": url,
            "CAMPOPT_MLFLOW_TRACKING_URI": tracking,
            "CAMPOPT_DATA_DIR": str(folder),
            "CAMPOPT_POLICY_RELOAD_SECONDS": str(args.reload_seconds),
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--workers",
                "2",
                "--port",
                str(PORT),
                "--no-scheduler",
            ],
            env=env,
        )
        try:
            _wait_ready(PORT)
            i = 0
            while True:
                seen = {_decide(key, i + j) for j in range(8)}
                i += 8
                if seen == {first}:
                    break
                time.sleep(0.2)
            registry.set_alias(frame.key, CHAMPION, second)
            moved = time.perf_counter()
            while True:
                seen = {_decide(key, i + j) for j in range(8)}
                i += 8
                if seen == {second}:
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - moved
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    print(
        f"alias moved {first} -> {second}; every worker served {second} after {elapsed:.1f} s "
        f"(reload interval {args.reload_seconds:g} s, 2 workers)"
    )


if __name__ == "__main__":
    main()
