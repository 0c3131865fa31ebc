"""In-process decision latency next to the raw VW predict time for the same candidates.

For 10, 100 and 1,000 candidates: the whole decision (customer lock, history, eligibility,
policy, contact reservation and decision log committed on SQLite with synchronous=FULL) against
one VW predict over the same candidate lines, measured in the same run.

    python -m benchmarks.decision_latency [--decisions 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from api.app import tune_garbage_collector
from benchmarks.synthetic_catalog import synthetic_catalog
from campaign_db import migrate
from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.customers import add_customers
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import Checkpointer, create_engine_from_url, session_scope
from optimizer.core.catalog import CatalogSpec
from optimizer.core.decision import DecisionAsk
from optimizer.decisions import DecisionService
from optimizer.features import shared_line
from optimizer.policy import BanditPolicy
from optimizer.serving import CatalogCache, PolicyPool

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(candidates: int, decisions: int, url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine_from_url(
            url or f"sqlite:///{Path(tmp) / 'bench.db'}", autocheckpoint=False
        )
        checkpointer = Checkpointer(engine).start()
        migrate.downgrade(engine, "base")
        migrate.upgrade(engine)
        catalog = CatalogSpec.model_validate(synthetic_catalog(candidates))
        with session_scope(engine, write=True) as session:
            load_catalog(session, catalog=catalog, source="bench", actor="bench")
            ids = [f"c{i}" for i in range(decisions + 200)]
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
        cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
        pool = PolicyPool()
        service = DecisionService(SqlDecisionStore(engine), catalog=cache, policies=pool)
        snapshot, lines = cache.current()
        frame = snapshot.frames[0]
        policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key, version="bench")
        action_lines = [lines[a] for a in sorted(snapshot.actions.values())]
        rng = np.random.default_rng(0)
        for _ in range(300):
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
                chosen=int(rng.integers(len(action_lines))),
                reward=float(rng.random() < 0.1),
                probability=1 / len(action_lines),
            )
        pool.install(policy)
        tune_garbage_collector()

        latencies: list[float] = []
        seen = set()
        for i in range(decisions + 200):
            start = time.perf_counter()
            answer = service.decide(
                DecisionAsk(
                    request_id=f"r{i}",
                    customer_id=ids[i],
                    trigger="bench",
                    channels=[c.key for c in catalog.channels],
                    now=NOW,
                )
            )
            elapsed = time.perf_counter() - start
            if i >= 200:  # warm-up: first parse of every action example
                latencies.append(elapsed)
            seen.add(answer.candidates)
        assert seen == {candidates}, f"expected {candidates} candidates, saw {seen}"

        predict: list[float] = []
        context = {
            "health_class": "C",
            "usage_index": 0.3,
            "language": "en",
            "trigger": "bench",
            "hour": 12,
            "weekday": 0,
            "tenure_days": None,
            "attributes": {},
        }
        for _ in range(decisions):
            start = time.perf_counter()
            policy.model.predict(shared_line(context), action_lines)
            predict.append(time.perf_counter() - start)
        checkpointer.stop()
        engine.dispose()
    return {
        "decision_p50": percentile(latencies, 50) * 1e3,
        "decision_p99": percentile(latencies, 99) * 1e3,
        "predict_p50": percentile(predict, 50) * 1e3,
        "predict_p99": percentile(predict, 99) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--candidates", type=int, nargs="*", default=[10, 100, 1000])
    args = parser.parse_args()
    table = Table(title="in-process decision latency (ms)")
    for column in (
        "candidates",
        "decision p50",
        "decision p99",
        "VW predict p50",
        "VW predict p99",
        "p99 ratio",
    ):
        table.add_column(column, justify="right")
    for k in args.candidates:
        r = run(k, args.decisions, args.database_url)
        table.add_row(
            str(k),
            f"{r['decision_p50']:.2f}",
            f"{r['decision_p99']:.2f}",
            f"{r['predict_p50']:.3f}",
            f"{r['predict_p99']:.3f}",
            f"{r['decision_p99'] / r['predict_p99']:.1f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
