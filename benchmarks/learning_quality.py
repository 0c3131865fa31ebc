"""Learning quality on the default simulator: the real loop, then learners side by side.

Target: over a 100,000-decision run, in the last 20 % of policy decisions, the learning policy
captures at least 80 % of the oracle's lift over uniform random,
(V - V_uniform) / (V_oracle - V_uniform) >= 0.8, where the oracle is the best distribution over
each decision's candidates within the frame's offer-cost limit (what serving lets a policy reach;
lift capture against the unconstrained oracle, the best candidate each time, is reported too),
beats the best fixed combination, and no contact cap is ever broken; a well-known peer (MABWiser
LinUCB / LinTS) on the same features is reported with the same figures.

Part A runs the whole system (`api.demo.run_demo`: decisions, sends, conversions, attribution,
reward finalisation, online learning, publishing) on the example catalog into a temporary folder.

Part B replays Part A's policy decisions (time order; same customers, contexts, triggers and
candidate sets) in memory for several learners. Each learner picks one candidate per decision;
the reward is drawn from the ground truth's take-rate (the customer's noise re-created from the
seed) with one pre-drawn uniform per decision shared by all learners, and becomes learnable at
the end of the simulated day on which created_at + the frame's attribution window has passed
(the delay until the send time is ignored). Learners choose with the model they had at the
start of each simulated day, as the service does. Both oracles and the best fixed combination
(per frame, in hindsight; it ignores the cost limits) are computed on the same stream as
`optimizer.simulator.metrics` does.

    python -m benchmarks.learning_quality [--customers 28500] [--days 80] [--seed 7]
        [--out DIR --skip-demo] [--limit N] [--linucb-alpha 0.01 0.1 1] [--lints-alpha 0.01 0.1 1]
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from api.demo import run_demo
from api.settings import Settings
from benchmarks.learning_peers import (
    Learner,
    MabwiserLearner,
    Outcome,
    StreamDecision,
    UniformLearner,
    VWLearner,
    context_features,
    context_vector,
)
from campaign_db.catalog import SqlCatalogReader, read_catalog
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import DecisionLog
from optimizer.core.catalog import NO_CONTACT, CatalogSnapshot
from optimizer.eligibility import frame_combinations
from optimizer.features import ActionLines, shared_line
from optimizer.serving import CatalogCache
from optimizer.simulator import metrics
from optimizer.simulator.population import Population
from optimizer.simulator.reactions import (
    POLICY_REASONS,
    DecisionStats,
    action_costs,
    cost_limits,
    oracle_within_limit,
)
from optimizer.simulator.run import SimulationConfig
from optimizer.simulator.truth import GroundTruth

console = Console(width=120)


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


# --- Part A: the real system -----------------------------------------------------------------


def part_a(config: SimulationConfig, out: Path) -> dict[str, Any]:
    catalog = read_catalog(Settings().catalog_path)
    started = time.perf_counter()

    def progress(day: int) -> None:
        if day % 10 == 0 or day == config.days:
            elapsed = time.perf_counter() - started
            console.print(f"  day {day}/{config.days}, {elapsed:.0f} s", highlight=False)

    result = run_demo(catalog=catalog, out=out, config=config, register=False, on_day=progress)
    summary = result.summary
    rates = summary["conversion_rate"]
    table = Table(title="Part A: the real system (api.demo.run_demo), last 20 % of decisions")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("customers x days, seed", f"{config.customers} x {config.days}, seed {config.seed}"),
        ("decisions", str(summary["decisions"])),
        ("policy decisions", str(summary["policy_decisions"])),
        ("learned rewards", str(summary["learned"])),
        ("expected conversion rate: policy", pct(rates["policy"])),
        ("expected conversion rate: uniform", pct(rates["uniform"])),
        ("expected conversion rate: best_fixed (ignores cost limits)", pct(rates["best_fixed"])),
        ("expected conversion rate: oracle within cost limits", pct(rates["oracle_within_limits"])),
        ("expected conversion rate: oracle, unconstrained", pct(rates["oracle"])),
        ("lift capture within cost limits (target >= 0.87)", f"{summary['lift_capture']:.3f}"),
        ("lift capture, unconstrained oracle", f"{summary['lift_capture_unconstrained']:.3f}"),
        ("beats best fixed", str(summary["beats_best_fixed"])),
        (
            "best fixed above its frame's cost limit in",
            ", ".join(summary["best_fixed_over_cost_limit"]) or "none",
        ),
        ("contact-cap violations", str(summary["cap_violations"])),
        ("runtime", f"{summary['runtime_seconds']:.0f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    return summary


# --- Part B: the same decisions, several learners --------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def frame_arms(snapshot: CatalogSnapshot) -> dict[str, list[int]]:
    """Every action a frame can ever propose (all languages and its health classes)."""
    languages = sorted({t.language for t in snapshot.texts.values()})
    arms: dict[str, list[int]] = {}
    for frame in snapshot.frames:
        ids = {
            c.action_id
            for language in languages
            for hc in frame.spec.health_classes
            for c in frame_combinations(snapshot, frame, language, hc)
        }
        if frame.spec.allow_no_contact:
            ids.add(snapshot.actions[NO_CONTACT])
        arms[frame.key] = sorted(ids)
    return arms


def load_stream(
    database: Path, config: SimulationConfig, *, draw_seed: int
) -> tuple[list[StreamDecision], CatalogSnapshot, ActionLines, list[str]]:
    engine = create_engine_from_url(f"sqlite:///{database.resolve()}")
    try:
        snapshot, lines = CatalogCache(SqlCatalogReader(engine)).current()
        with session_scope(engine) as session:
            rows = session.exec(
                select(
                    DecisionLog.id,
                    DecisionLog.created_at,
                    DecisionLog.customer_id,
                    DecisionLog.trigger_key,
                    DecisionLog.frame_key,
                    DecisionLog.context,
                    DecisionLog.candidate_action_ids,
                )
                .where(col(DecisionLog.reason).in_(sorted(POLICY_REASONS)))
                .order_by(col(DecisionLog.created_at), col(DecisionLog.id))
            ).all()
    finally:
        engine.dispose()
    # the simulator's per-customer noise: the population is the first draw from the seed
    population = Population.generate(
        config.customers, rng=np.random.default_rng(config.seed), start=config.start
    )
    noise = dict(zip(population.ids, population.noise, strict=True))
    truth = GroundTruth.for_snapshot(snapshot)
    windows = {f.key: f.spec.attribution.window_days for f in snapshot.frames}
    triggers = sorted(snapshot.triggers)
    draws = np.random.default_rng(draw_seed).random(len(rows))
    stream = []
    for i, (decision_id, created, customer, trigger, frame, context, ids) in enumerate(rows):
        created = _utc(created)
        health_class = str(context.get("health_class", "C"))
        rates = truth.take_rates(
            health_class=health_class,
            trigger=trigger,
            action_ids=ids,
            noise=float(noise[customer]),
        )
        organic = truth.organic_rate(
            health_class=health_class, trigger=trigger, noise=float(noise[customer])
        )
        stream.append(
            StreamDecision(
                index=i,
                decision_id=decision_id,
                day=(created.date() - config.start).days,
                created_at=created,
                frame=str(frame),
                trigger=trigger,
                context=context,
                action_ids=np.asarray(ids, dtype=np.int64),
                rates=rates,
                organic=organic,
                draw=float(draws[i]),
                matures_at=created + timedelta(days=windows[str(frame)]),
                shared=shared_line(context),
                vector=context_vector(context, triggers),
            )
        )
    return stream, snapshot, lines, triggers


@dataclass
class ReplayResult:
    name: str
    chosen_rates: np.ndarray[Any, Any]
    rewards: np.ndarray[Any, Any]
    learned: int
    seconds: float


def replay(stream: Sequence[StreamDecision], learner: Learner, *, start: datetime) -> ReplayResult:
    chosen = np.empty(len(stream))
    rewards = np.empty(len(stream))
    pending: list[tuple[datetime, int, Outcome]] = []
    learned = 0
    began = time.perf_counter()
    by_day = {day: list(rows) for day, rows in groupby(stream, key=lambda d: d.day)}
    for day in range(min(by_day), max(by_day) + 1):
        decisions = by_day.get(day, [])
        if decisions:
            for d, (position, probability) in zip(
                decisions, learner.choose(decisions), strict=True
            ):
                rate = float(d.rates[position])
                reward = float(d.draw < rate)
                chosen[d.index], rewards[d.index] = rate, reward
                heapq.heappush(
                    pending, (d.matures_at, d.index, Outcome(d, position, probability, reward))
                )
        day_end = start + timedelta(days=day + 1)
        matured = []
        while pending and pending[0][0] <= day_end:
            matured.append(heapq.heappop(pending)[2])
        if matured:
            learner.learn(matured)
            learned += len(matured)
    return ReplayResult(learner.name, chosen, rewards, learned, time.perf_counter() - began)


def stream_stats(
    stream: Sequence[StreamDecision], chosen: np.ndarray[Any, Any], *, snapshot: CatalogSnapshot
) -> DecisionStats:
    """The stream as the simulator's `DecisionStats`, with `chosen` as the policy's rates."""
    stats = DecisionStats()
    costs, limits = action_costs(snapshot), cost_limits(snapshot)
    for d in stream:
        stats.frame.append(d.frame)
        stats.candidates.append(d.action_ids.astype(np.int32))
        stats.rates.append(d.rates.astype(np.float32))
        stats.organic.append(d.organic)
        stats.uniform.append(float(d.rates.mean()))
        stats.oracle.append(float(d.rates.max()))
        stats.oracle_within_limits.append(
            oracle_within_limit(
                d.rates, d.action_ids, costs=costs, limit=limits.get(d.frame, float("inf"))
            )
        )
        stats.policy.append(float(chosen[d.index]))
    return stats


def part_b(
    database: Path,
    config: SimulationConfig,
    *,
    limit: int | None,
    linucb_alphas: Sequence[float],
    lints_alphas: Sequence[float],
    skip_vw: bool,
) -> None:
    began = time.perf_counter()
    stream, snapshot, lines, triggers = load_stream(database, config, draw_seed=config.seed + 1)
    total = len(stream)
    if limit is not None and limit < total:
        stream = stream[:limit]
    arms = frame_arms(snapshot)
    console.print(
        f"Part B: {len(stream)} of {total} policy decisions, days {stream[0].day}-"
        f"{stream[-1].day}, loaded in {time.perf_counter() - began:.0f} s; candidates per "
        f"decision: median {np.median([len(d.action_ids) for d in stream]):.0f}, "
        f"max {max(len(d.action_ids) for d in stream)}; arms per frame: "
        + ", ".join(f"{k} {len(v)}" for k, v in arms.items()),
        highlight=False,
    )
    learners: list[Learner] = [UniformLearner(config.seed)]
    if not skip_vw:
        learners.append(VWLearner(snapshot, lines))
    learners += [
        MabwiserLearner("LinUCB", alpha=a, arms_by_frame=arms, seed=config.seed)
        for a in linucb_alphas
    ]
    learners += [
        MabwiserLearner("LinTS", alpha=a, arms_by_frame=arms, seed=config.seed)
        for a in lints_alphas
    ]
    start = datetime.combine(config.start, datetime.min.time(), tzinfo=UTC)
    results = []
    for learner in learners:
        result = replay(stream, learner, start=start)
        console.print(
            f"  {result.name}: {result.seconds:.0f} s, {result.learned} rewards learned",
            highlight=False,
        )
        results.append(result)

    n = len(stream)
    rows = metrics.tail(n)
    base = stream_stats(stream, np.zeros(n), snapshot=snapshot)
    winners = metrics.best_fixed_per_frame(base)
    best = metrics.best_fixed_values(base, winners)
    uniform = float(np.mean(base.uniform[rows]))
    oracle = float(np.mean(base.oracle[rows]))
    within = float(np.mean(base.oracle_within_limits[rows]))
    best_fixed = float(np.mean(best[rows]))
    over_limit = metrics.over_cost_limit(
        winners, costs=action_costs(snapshot), limits=cost_limits(snapshot)
    )

    def capture(value: float) -> str:
        return f"{(value - uniform) / (within - uniform):.3f}"

    def capture_unconstrained(value: float) -> str:
        return f"{(value - uniform) / (oracle - uniform):.3f}"

    tail_size = rows.stop - rows.start
    table = Table(title=f"Part B: the same {n} policy decisions, last 20 % ({tail_size})")
    for column in (
        "learner",
        "expected conv. rate",
        "realised conv. rate",
        "lift capture",
        "vs unconstrained",
        "beats best fixed",
        "runtime",
    ):
        table.add_column(column, justify="left" if column == "learner" else "right")
    table.add_row(
        "oracle, unconstrained (best candidate each time)",
        pct(oracle),
        "",
        capture(oracle),
        "1.000",
        "",
        "",
    )
    table.add_row(
        "oracle within the frames' cost limits",
        pct(within),
        "",
        "1.000",
        capture_unconstrained(within),
        "",
        "",
    )
    table.add_row(
        "best fixed per frame (hindsight; ignores cost limits)",
        pct(best_fixed),
        "",
        capture(best_fixed),
        capture_unconstrained(best_fixed),
        "",
        "",
    )
    table.add_row("uniform random (expectation)", pct(uniform), "", "0.000", "0.000", "", "")
    for r in results:
        value = float(np.mean(r.chosen_rates[rows]))
        table.add_row(
            r.name,
            pct(value),
            pct(float(np.mean(r.rewards[rows]))),
            capture(value),
            capture_unconstrained(value),
            str(value > best_fixed),
            f"{r.seconds:.0f} s",
        )
    console.print(table)
    console.print(
        "Lift capture is against the oracle within the frames' cost limits (the best "
        "distribution over each decision's candidates whose expected offer cost stays within "
        "the frame's max_offer_cost_per_decision); 'vs unconstrained' against the best "
        "candidate each time. The MABWiser peers and the VW replay do not apply the cost "
        "limits, so they can exceed 1.000. Best fixed above its frame's cost limit in: "
        + (", ".join(over_limit) or "none")
        + ".",
        highlight=False,
    )
    console.print(
        "MABWiser configuration: one MAB per frame; arms = every action id the frame can "
        "propose (frame_combinations over all languages and its health classes, plus "
        "no_contact), all declared up front; l2_lambda=1, scale=False, n_jobs=1; picks the "
        "arm with the highest predict_expectations among the decision's candidates (greedy on "
        "UCB / the Thompson sample; MABWiser reports no probability); before a frame's first "
        "fit it picks uniformly; learning is fit / partial_fit once per simulated day with the "
        "rewards that matured that day.\n"
        f"Context vector ({len(context_features(triggers))} columns): "
        + ", ".join(context_features(triggers)),
        highlight=False,
    )
    console.print(
        "Replay caveats: candidate sets, contexts and timings are Part A's (they depend on the "
        "contacts Part A's policy made); rewards are Bernoulli(truth take-rate) with the "
        "customer's noise from the seed and no send delay; the VW replay samples with the "
        "logged decision's id as seed, so its choices differ from Part A's.",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=28_500)
    parser.add_argument("--days", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: tmp)")
    parser.add_argument("--skip-demo", action="store_true", help="reuse --out's database")
    parser.add_argument("--limit", type=int, default=None, help="replay only a stream prefix")
    parser.add_argument("--linucb-alpha", type=float, nargs="*", default=[0.01, 0.1, 1.0])
    parser.add_argument("--lints-alpha", type=float, nargs="*", default=[0.01, 0.1, 1.0])
    parser.add_argument("--skip-vw", action="store_true")
    args = parser.parse_args()
    config = SimulationConfig(customers=args.customers, days=args.days, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        if not args.skip_demo:
            part_a(config, out)
        elif args.out is None:
            parser.error("--skip-demo needs --out with a previous run")
        part_b(
            out / "campopt.db",
            config,
            limit=args.limit,
            linucb_alphas=args.linucb_alpha,
            lints_alphas=args.lints_alpha,
            skip_vw=args.skip_vw,
        )


if __name__ == "__main__":
    main()
