"""Online learning throughput at 100 candidates, next to VW's raw learn rate on the same examples.

Target: the online learner learns at least 2,000 final rewards/s at 100 candidates.

Sets up a fresh SQLite database with the synthetic 100-candidate catalog, makes decisions for
fresh customers through `DecisionService` (submitted in batches), marks the contacts sent, posts
conversions for some, finalises every reward, and then times
`OnlineLearner.run_until_caught_up()`. In the same run: `BanditPolicy.learn` on the same
examples with pre-built shared and action lines and no database (the raw VW rate), a breakdown
of the learner's step (reading rewards, featurising, learning), `learner.checkpoint()` with
a `PoolPublisher`, and replay: the learned policy's distributions over every logged candidate
set, as offline evaluation computes them for a VW policy (the usual bottleneck there). Below
the target, or with --profile, a cProfile of a fresh learner's run.

    python -m benchmarks.learning_throughput [--decisions 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.synthetic_catalog import synthetic_catalog
from campaign_db import learning, migrate
from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.customers import add_customers
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.learning import SqlLearningStore
from campaign_db.rewards import SqlRewardStore
from optimizer.core.catalog import CatalogSpec
from optimizer.core.decision import DecisionAsk
from optimizer.decisions import DecisionService
from optimizer.features import shared_line
from optimizer.feedback import ConversionReport, EventReport, record_conversions, record_events
from optimizer.learner import OnlineLearner, PoolPublisher
from optimizer.offline import load_decision_logs, replay_policies
from optimizer.policy import BanditPolicy
from optimizer.rewards import finalize_due
from optimizer.serving import CatalogCache, PolicyPool

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TARGET = 2_000.0
console = Console(width=120)


def prepare(url: str, decisions: int, conversion_share: float, seed: int) -> dict[str, float]:
    """Database, catalog, customers, decisions, sends, conversions, final rewards."""
    timings: dict[str, float] = {}
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    catalog = CatalogSpec.model_validate(synthetic_catalog(100))
    channels = [c.key for c in catalog.channels]
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=catalog, source="bench", actor="bench")
    ids = [f"c{i}" for i in range(decisions)]
    for start in range(0, decisions, 20_000):
        chunk = ids[start : start + 20_000]
        with session_scope(engine, write=True) as session:
            add_customers(
                session,
                customers=[
                    {
                        "id": c,
                        "health_class": "ABCD"[(start + i) % 4],
                        "usage_index": ((start + i) % 10) / 10,
                        "time_zone": "Europe/Berlin",
                        "language": "en",
                    }
                    for i, c in enumerate(chunk)
                ],
                consents=[(c, ch) for c in chunk for ch in channels],
                now=NOW,
            )

    cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
    service = DecisionService(SqlDecisionStore(engine), catalog=cache, policies=PolicyPool())
    began = time.perf_counter()
    answers = []
    for start in range(0, decisions, 2_000):
        futures = [
            service.submit(
                DecisionAsk(
                    request_id=f"r{i}",
                    customer_id=ids[i],
                    trigger="bench",
                    channels=channels,
                    now=NOW + timedelta(seconds=i),
                )
            )
            for i in range(start, min(start + 2_000, decisions))
        ]
        answers += [f.result(timeout=300) for f in futures]
    service.close()
    timings["decisions"] = time.perf_counter() - began
    sizes = {a.candidates for a in answers}
    assert sizes == {100}, f"expected 100 candidates per decision, saw {sizes}"

    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    contacted = [a for a in answers if a.contact]
    for start in range(0, len(contacted), 5_000):
        record_events(
            SqlFeedbackStore(engine),
            events=[
                (a.decision_id, EventReport(kind="sent", occurred_at=a.decided_at))
                for a in contacted[start : start + 5_000]
            ],
            now=NOW + timedelta(hours=6),
        )
    converting = [a for a in answers if rng.random() < conversion_share]
    for start in range(0, len(converting), 5_000):
        record_conversions(
            SqlFeedbackStore(engine),
            conversions=[
                ConversionReport(
                    conversion_id=f"conv-{a.decision_id}",
                    customer_id=a.customer_id,
                    kind="retained",
                    value=10.0,
                    occurred_at=a.decided_at + timedelta(hours=2),
                )
                for a in converting[start : start + 5_000]
            ],
            now=NOW + timedelta(days=1),
        )
    timings["feedback"] = time.perf_counter() - began
    began = time.perf_counter()
    final = 0
    while (report := finalize_due(SqlRewardStore(engine), now=NOW + timedelta(days=365))).total:
        final += report.final
    timings["finalize"] = time.perf_counter() - began
    timings["final_rewards"] = final
    timings["converted"] = len(converting)
    engine.dispose()
    return timings


def raw_vw_rate(url: str) -> dict[str, float]:
    """The same final rewards learned by a bare BanditPolicy, lines built beforehand."""
    engine = create_engine_from_url(url)
    cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
    snapshot, lines = cache.current()
    frame = snapshot.frames[0]
    out: dict[str, float] = {}
    began = time.perf_counter()
    events = []
    cursor = 0
    while True:
        with session_scope(engine) as session:
            chunk = learning.final_rewards_after(session, cursor=cursor, limit=5_000)
        if not chunk:
            break
        events += chunk
        cursor = chunk[-1].sequence
    out["read_seconds"] = time.perf_counter() - began
    began = time.perf_counter()
    examples = []
    for e in events:
        action_lines = [lines[int(a)] for a in e.action_ids]
        chosen = int(np.flatnonzero(e.action_ids == e.chosen_action_id)[0])
        examples.append((shared_line(e.context), action_lines, chosen, e.reward, e.probability))
    out["featurise_seconds"] = time.perf_counter() - began
    policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key)
    began = time.perf_counter()
    for shared, action_lines, chosen, reward, probability in examples:
        policy.learn(shared, action_lines, chosen=chosen, reward=reward, probability=probability)
    out["learn_seconds"] = time.perf_counter() - began
    out["examples"] = len(examples)
    engine.dispose()
    return out


def profile_learner(url: str, top: int) -> str:
    """cProfile of a fresh learner (no checkpoint yet, so it starts at cursor 0)."""
    engine = create_engine_from_url(url)
    learner = OnlineLearner(
        SqlLearningStore(engine), CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
    )
    profiler = cProfile.Profile()
    profiler.enable()
    learner.run_until_caught_up()
    profiler.disable()
    engine.dispose()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--conversion-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="profile even above the target")
    parser.add_argument("--top", type=int, default=15, help="functions shown by the profile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        setup = prepare(url, args.decisions, args.conversion_share, args.seed)
        console.print(
            f"set-up: {args.decisions} decisions in {setup['decisions']:.1f} s, feedback "
            f"{setup['feedback']:.1f} s, finalize {setup['finalize']:.1f} s: "
            f"{setup['final_rewards']:.0f} final rewards ({setup['converted']:.0f} conversions)",
            highlight=False,
        )

        engine = create_engine_from_url(url)
        pool = PolicyPool()
        cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
        learner = OnlineLearner(SqlLearningStore(engine), cache, publisher=PoolPublisher(pool))
        learner.load()
        cache.current()
        began = time.perf_counter()
        learned = learner.run_until_caught_up()
        learn_seconds = time.perf_counter() - began
        rate = learned / learn_seconds

        raw = raw_vw_rate(url)
        raw_rate = raw["examples"] / raw["learn_seconds"]

        profile = None
        if args.profile or rate < TARGET:
            profile = profile_learner(url, args.top)

        began = time.perf_counter()
        published = learner.checkpoint()
        checkpoint_seconds = time.perf_counter() - began
        model_bytes = len(learner.lineages[next(iter(published))].policy.serialize())

        snapshot, lines = cache.current()
        began = time.perf_counter()
        logs = load_decision_logs(SqlDecisionLogs(engine), snapshot)
        load_seconds = time.perf_counter() - began
        learned_policies = {name: lineage.policy for name, lineage in learner.lineages.items()}
        floors = {
            frame.key: frame.spec.policy_spec().floor_share(frame.spec.exploration)
            for frame in snapshot.frames
        }
        began = time.perf_counter()
        replay_policies(logs, learned_policies, lines, floor_shares=floors)
        replay_seconds = time.perf_counter() - began
        engine.dispose()

    table = Table(title="online learning throughput, 100 candidates, SQLite")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("rewards learned", str(learned))
    table.add_row("OnlineLearner.run_until_caught_up", f"{learn_seconds:.2f} s")
    table.add_row(
        f"learner throughput (target >= {TARGET:,.0f})",
        f"{rate:,.0f} rewards/s {'PASS' if rate >= TARGET else 'MISS'}",
    )
    table.add_row("raw VW BanditPolicy.learn (pre-built lines)", f"{raw_rate:,.0f} rewards/s")
    table.add_row("learner / raw VW", f"{rate / raw_rate:.2f}")
    per = 1e6 / raw["examples"]
    table.add_row(
        "breakdown per reward: DB read / featurise / VW learn",
        f"{raw['read_seconds'] * per:.0f} / {raw['featurise_seconds'] * per:.0f} / "
        f"{raw['learn_seconds'] * per:.0f} µs",
    )
    table.add_row(
        "learner.checkpoint (save + PoolPublisher)",
        f"{checkpoint_seconds * 1e3:.0f} ms ({model_bytes / 1e3:.0f} kB model)",
    )
    rows = logs.data.n
    table.add_row(
        "replay: load logged decisions from the database",
        f"{rows:,} in {load_seconds:.2f} s",
    )
    table.add_row(
        "replay: VW distributions over the logged candidate sets",
        f"{rows / replay_seconds:,.0f} decisions/s; 10 million would take "
        f"{10_000_000 / (rows / replay_seconds) / 60:.0f} min",
    )
    console.print(table)
    if profile is not None:
        console.print(profile, highlight=False, markup=False)


if __name__ == "__main__":
    main()
