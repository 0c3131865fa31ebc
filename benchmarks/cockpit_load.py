"""How long the cockpit's pages take with many decisions in the window.

Runs the demo's simulation (real decision service, SQLite) over the days before today, so the
overview's window is full of decisions, conversions and holdout decisions; then signs in to the
app and times each page (median and 95th percentile of `--repeat` loads, server side through
the ASGI app, no network).

    python -m benchmarks.cockpit_load [--customers 12000] [--days 14] [--repeat 20]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from api.app import create_app
from api.auth import create_key
from api.demo import run_demo
from api.settings import EXAMPLE_CATALOG, Settings
from campaign_db.catalog import read_catalog
from campaign_db.engine import create_engine_from_url
from optimizer.simulator.run import SimulationConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = (datetime.now(UTC) - timedelta(days=args.days)).date()
        began = time.perf_counter()
        demo = run_demo(
            catalog=read_catalog(EXAMPLE_CATALOG),
            out=out,
            config=SimulationConfig(customers=args.customers, days=args.days, start=start),
            register=False,
        )
        console.print(
            f"simulated {demo.summary.get('decisions')} decisions over {args.days} days in "
            f"{time.perf_counter() - began:.0f} s"
        )
        url = f"sqlite:///{demo.database.resolve()}"
        engine = create_engine_from_url(url)
        key = create_key(engine, name="bench", scopes=["admin"], actor="bench")[1]
        engine.dispose()
        settings = Settings(
            data_dir=out, database_url=url, mlflow_tracking_uri="disabled", scheduler_enabled=False
        )
        with TestClient(create_app(settings)) as client:
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text)
            assert token is not None
            client.post("/ui/login", data={"api_key": key, "csrf": token.group(1)})
            table = Table(title=f"cockpit page loads ({args.repeat} each)")
            for column in ("page", "median ms", "p95 ms", "bytes"):
                table.add_column(column, justify="right")
            for page in ("/ui/overview", "/ui/overview?days=30", "/ui/approvals", "/ui/audit"):
                timings = []
                size = 0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = client.get(page)
                    timings.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, (page, response.status_code)
                    assert "/ui/login" not in str(response.url), "the session was lost"
                    size = len(response.content)
                timings.sort()
                p95 = timings[min(len(timings) - 1, int(0.95 * len(timings)))]
                table.add_row(page, f"{statistics.median(timings):.1f}", f"{p95:.1f}", str(size))
            console.print(table)


if __name__ == "__main__":
    main()
