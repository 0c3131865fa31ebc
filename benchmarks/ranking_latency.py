"""In-process ranking latency: 3 slots over 100 pull combinations, with a trained policy.

Two figures per run: planning alone (frame, candidates, three slot-by-slot VW predictions,
the answer) and the whole ranking through `RankingService.rank` (customer read, planning, the
ranking log and its slot rewards committed on SQLite with synchronous=FULL, or on the database
of `--database-url`).

    python -m benchmarks.ranking_latency [--rankings 2000] [--slots 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from api.app import tune_garbage_collector
from campaign_db import migrate
from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.customers import add_customers
from campaign_db.engine import Checkpointer, create_engine_from_url, session_scope
from campaign_db.rankings import SqlRankingStore
from optimizer.core.catalog import NO_CONTACT, CatalogSpec
from optimizer.features import shared_line
from optimizer.policy import BanditPolicy
from optimizer.ranking import RankingAsk, plan_ranking
from optimizer.rankings import RankingService
from optimizer.serving import CatalogCache, PolicyPool

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def pull_catalog(offers: int = 25, texts: int = 4) -> dict[str, Any]:
    """One frame on one pull channel: `offers` x `texts` combinations (100 by default)."""
    return {
        "triggers": [{"key": "page_view", "name": "Portal page view"}],
        "channels": [{"key": "portal", "name": "Portal", "kind": "pull", "max_length": 500}],
        "send_times": [{"key": "now", "name": "Now", "kind": "immediate"}],
        "offers": [
            {"key": f"offer_{i}", "name": f"offer {i}", "kind": "content"} for i in range(offers)
        ],
        "texts": [
            {
                "key": f"text_{i}_{j}",
                "offer": f"offer_{i}",
                "language": "en",
                "channels": ["portal"],
                "tone": ["friendly", "urgent", "informative", "neutral"][j % 4],
                "body": f"Offer {i}, variant {j}.",
            }
            for i in range(offers)
            for j in range(texts)
        ],
        "frames": [
            {
                "key": "portal",
                "name": "Portal placement",
                "triggers": ["page_view"],
                "health_classes": ["A", "B", "C", "D"],
                "offers": [f"offer_{i}" for i in range(offers)],
                "channels": ["portal"],
                "send_times": ["now"],
                "max_offer_cost": 10,
                "valid_from": "2026-01-01",
                "holdout_share": 0.0,
                "approval": {"approved_by": "benchmark", "approved_at": "2026-11-01T00:00:00Z"},
            }
        ],
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1e3)


def run(rankings: int, slots: int, url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine_from_url(
            url or f"sqlite:///{Path(tmp) / 'bench.db'}", autocheckpoint=False
        )
        checkpointer = Checkpointer(engine).start()
        migrate.downgrade(engine, "base")
        migrate.upgrade(engine)
        catalog = CatalogSpec.model_validate(pull_catalog())
        customers = [f"c{i}" for i in range(200)]
        with session_scope(engine, write=True) as session:
            load_catalog(session, catalog=catalog, source="bench", actor="bench")
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
                    for i, c in enumerate(customers)
                ],
                consents=[(c, "portal") for c in customers],
                now=NOW,
            )
        cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
        pool = PolicyPool()
        store = SqlRankingStore(engine)
        service = RankingService(store, catalog=cache, policies=pool)
        snapshot, lines = cache.current()
        frame = snapshot.frames[0]
        policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key, version="bench")
        action_lines = [
            lines[a] for sig, a in sorted(snapshot.actions.items()) if sig != NO_CONTACT
        ]
        rng = np.random.default_rng(0)
        for i in range(300):
            context = {
                "health_class": "ABCD"[int(rng.integers(4))],
                "usage_index": rng.random(),
                "language": "en",
                "trigger": "page_view",
                "hour": 12,
                "weekday": 0,
                "slot": 1 + i % slots,
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

        state = store.read_customer("c1")
        assert state is not None
        planning: list[float] = []
        for i in range(rankings + 200):
            ask = RankingAsk(f"p{i}", "c1", "page_view", "portal", slots)
            start = time.perf_counter()
            plan = plan_ranking(
                ask,
                now=NOW,
                state=state,
                snapshot=snapshot,
                policy_for=pool.policy_for,
                combinations=cache.combinations,
                ranking_id=uuid.UUID(int=i),
            )
            if i >= 200:
                planning.append(time.perf_counter() - start)
        assert [s.candidates for s in plan.answer.slots] == [100 - 4 * k for k in range(slots)]

        whole: list[float] = []
        for i in range(rankings + 200):
            ask = RankingAsk(f"r{i}", customers[i % len(customers)], "page_view", "portal", slots)
            start = time.perf_counter()
            answer = service.rank(ask)
            if i >= 200:
                whole.append(time.perf_counter() - start)
            assert len(answer.slots) == slots
        checkpointer.stop()
        engine.dispose()
    return {
        "plan_p50": percentile(planning, 50),
        "plan_p99": percentile(planning, 99),
        "rank_p50": percentile(whole, 50),
        "rank_p99": percentile(whole, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rankings", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    figures = run(args.rankings, args.slots, args.database_url)
    table = Table(title=f"ranking latency, {args.slots} slots over 100 combinations (ms)")
    for name in ("", "p50", "p99"):
        table.add_column(name)
    table.add_row(
        "planning (3 VW predictions)", f"{figures['plan_p50']:.2f}", f"{figures['plan_p99']:.2f}"
    )
    table.add_row(
        "whole ranking, logged", f"{figures['rank_p50']:.2f}", f"{figures['rank_p99']:.2f}"
    )
    Console().print(table)


if __name__ == "__main__":
    main()
