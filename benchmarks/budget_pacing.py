"""Budgets across customers: paced budget vs a first-come-first-served cap vs the hindsight LP.

Part 1 (`--seeds`, the simulator): a week of churn-prevention decisions on the example catalog,
customers of classes C and D arriving with a daily traffic profile, and a budget of 5,000 free
months for the week (`free_months`, count, offer `free_month`). Every combination is scored by
the simulator's true take-rate (an oracle scorer: this measures how the budget is allocated,
not how well a model learns), and each policy picks the best-scoring combination:

- **paced**: the frame's pacing price (`optimizer.budgets.budget_prices` and `price_penalties`,
  the functions the decision path uses) lowers the score of every combination the budget
  counts, with a plan linear in time and with one that follows the arrivals' hourly profile
  (the budget's `traffic`); the hard stop excludes them once the counter is spent;
- **fcfs**: no price; free months go to whoever prefers one until the budget is spent;
- **lp**: the hindsight optimum under the same budget, `scipy.optimize.linprog` over every
  arrival of the week (each customer's best free-month combination against their best other
  one: with one budget on one offer only those two matter, and the LP may split a customer);
- **none**: nothing the budget counts, the base the budget's extra conversions are counted from.

A second scenario (`frame`) puts the same limit on every contact of the frame (capacity, such as
a call centre's call-backs), where the customers differ far more in what a contact earns.

Conversions are expected conversions (the sum of the chosen combinations' true take-rates),
so the seeds differ in population, noise and arrival times, not in coin flips.

Part 2 (`--postgres URL`): 1,000 concurrent requests through the real decision service in 2
processes on one PostgreSQL database against a frame budget smaller than the demand; prints
the counter, the contacts reserved and the overshoot.

    .venv/bin/python -m benchmarks.budget_pacing --seeds 5
    .venv/bin/python -m benchmarks.budget_pacing --seeds 0 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.optimize import linprog
from sqlalchemy import create_engine, text

from campaign_db import migrate
from campaign_db.catalog import SqlCatalogReader, load_catalog, read_catalog, read_snapshot
from campaign_db.customers import add_customers
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import create_engine_from_url, session_scope
from optimizer.budgets import budget_prices, price_penalties
from optimizer.core.catalog import BudgetSpec, CatalogSnapshot, CatalogSpec, FrameVersion
from optimizer.core.decision import DecisionAsk
from optimizer.decisions import DecisionService
from optimizer.eligibility import frame_combinations
from optimizer.serving import CatalogCache, PolicyPool
from optimizer.simulator.truth import GroundTruth

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "catalog"
FRAME = "churn_prevention"
OFFER = "free_month"
BUDGET = 5000
WEEK_START = datetime(2026, 11, 23, tzinfo=ZoneInfo("Europe/Berlin"))  # a Monday
TRIGGER = {"C": "health_b_to_c", "D": "health_c_to_d"}
# arrivals per local hour: quiet at night, a peak in the evening
HOURLY = np.array([1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 7, 8, 9, 10, 9, 7, 4, 2], float)


def budgeted(catalog: CatalogSpec, budget: BudgetSpec) -> CatalogSpec:
    frames = [
        f.model_copy(update={"budgets": [budget]}) if f.key == FRAME else f for f in catalog.frames
    ]
    return catalog.model_copy(update={"frames": frames})


SCENARIOS = {
    # the example: 5,000 free months this week
    "offer": BudgetSpec(key="free_months", limit=BUDGET, period="week", offer=OFFER),
    # capacity for the whole frame (a call centre's call-backs): 5,000 contacts this week
    "frame": BudgetSpec(key="contacts", limit=BUDGET, period="week"),
}


def snapshot_with_budget(budget: BudgetSpec) -> CatalogSnapshot:
    catalog = budgeted(read_catalog(EXAMPLE), budget)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine_from_url(f"sqlite:///{Path(tmp) / 'catalog.db'}")
        migrate.upgrade(engine)
        with session_scope(engine, write=True) as session:
            load_catalog(session, catalog=catalog, source="bench", actor="bench")
        with session_scope(engine) as session:
            snapshot = read_snapshot(session)
        engine.dispose()
    return snapshot


@dataclass
class Week:
    """The arrivals of one seed: when, and per customer the true rate of every combination."""

    times: list[datetime]
    pairs: list[list[tuple[str, str] | None]]
    rates: list[np.ndarray[Any, Any]]
    budgeted: list[np.ndarray[Any, Any]]


def simulate_week(
    snapshot: CatalogSnapshot,
    truth: GroundTruth,
    frame: FrameVersion,
    budget: BudgetSpec,
    n: int,
    seed: int,
) -> Week:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 7, n)
    hours = rng.choice(24, n, p=HOURLY / HOURLY.sum())
    seconds = days * 86400 + hours * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(seconds, kind="stable")
    classes = rng.choice(["C", "D"], n)
    noise = rng.normal(0.0, truth.customer_noise_sd, n)
    combos = {hc: frame_combinations(snapshot, frame, "de", hc) for hc in "CD"}
    week = Week([], [], [], [])
    for i in order:
        hc = str(classes[i])
        options = combos[hc]
        ids = np.array([c.action_id for c in options] + [truth.no_contact_id])
        week.times.append((WEEK_START + timedelta(seconds=int(seconds[i]))).astimezone(UTC))
        week.pairs.append([(c.offer, c.channel) for c in options] + [None])
        week.rates.append(
            truth.take_rates(health_class=hc, trigger=TRIGGER[hc], action_ids=ids, noise=noise[i])
        )
        week.budgeted.append(
            np.array([budget.covers(c.offer, c.channel) for c in options] + [False])
        )
    return week


def run_policy(
    week: Week, snapshot: CatalogSnapshot, frame: FrameVersion, *, limit: float, paced: bool
) -> tuple[float, float]:
    """Expected conversions and spend of greedy choices under the budget (paced or not)."""
    spent = 0.0
    conversions = 0.0
    period = None
    for now, pairs, rates, budgeted_mask in zip(
        week.times, week.pairs, week.rates, week.budgeted, strict=True
    ):
        prices = budget_prices(frame, now, {period: spent} if period else {})
        period = next(iter(prices))
        scores = rates.copy()
        if paced:
            scores -= price_penalties(frame, now, pairs, snapshot.offers, prices, reward_span=1.0)
        if spent + 1 > limit:  # the hard stop: the budget's combinations are not candidates
            scores[budgeted_mask] = -np.inf
        choice = int(np.argmax(scores))
        conversions += float(rates[choice])
        spent += float(budgeted_mask[choice])
    return conversions, spent


def hindsight_lp(week: Week, limit: float) -> tuple[float, float, float]:
    """The LP optimum of expected conversions with at most `limit` spent over the week, the
    conversions with nothing the budget counts, and the budget the optimum spends."""
    best_other = np.array([r[~b].max() for r, b in zip(week.rates, week.budgeted, strict=True)])
    # a customer offered nothing the budget counts gains nothing from it
    best_budget = np.array(
        [r[b].max() if b.any() else -1.0 for r, b in zip(week.rates, week.budgeted, strict=True)]
    )
    gain = best_budget - best_other
    n = len(gain)
    result = linprog(
        -gain,
        A_ub=np.ones((1, n)),
        b_ub=[limit],
        bounds=[(0.0, 1.0)] * n,
        method="highs",
    )
    if not result.success:
        raise RuntimeError(f"linprog: {result.message}")
    base = float(best_other.sum())
    return base - float(result.fun), base, float(result.x.sum())


def simulation(scenario: str, seeds: int, n: int) -> None:
    budget = SCENARIOS[scenario]
    limit = budget.limit
    snapshot = snapshot_with_budget(budget)
    truth = GroundTruth.for_snapshot(snapshot)
    frame = next(f for f in snapshot.frames if f.key == FRAME)
    # the same budget with a plan that follows the arrivals' daily profile
    profiled = budget.model_copy(update={"traffic": HOURLY.tolist()})
    traffic_frame = replace(frame, spec=frame.spec.model_copy(update={"budgets": [profiled]}))
    print(
        f"\n{scenario}: {n:,} arrivals over one week, budget {budget.key} = {limit:,.0f} "
        f"{budget.measure} of {budget.scope} per {budget.period}"
    )
    header = (
        "seed",
        "plan",
        "paced spend %",
        "fcfs spend %",
        "lp",
        "paced",
        "fcfs",
        "none",
        "paced/lp",
        "paced/fcfs",
        "extra paced/fcfs",
        "extra lp/fcfs",
    )
    print(" | ".join(header))
    ratios: dict[str, list[float]] = {}
    for seed in range(seeds):
        started = time.perf_counter()
        week = simulate_week(snapshot, truth, frame, budget, n, seed)
        fcfs, fcfs_spent = run_policy(week, snapshot, frame, limit=limit, paced=False)
        lp, none, _ = hindsight_lp(week, limit)
        ceiling = (lp - none) / (fcfs - none)
        for plan, planned in (("linear", frame), ("traffic", traffic_frame)):
            paced, paced_spent = run_policy(week, snapshot, planned, limit=limit, paced=True)
            extra = (paced - none) / (fcfs - none)
            for name, value in (
                ("paced/lp", paced / lp),
                ("paced/fcfs", paced / fcfs),
                ("extra paced/fcfs", extra),
                ("paced spend/limit", paced_spent / limit),
            ):
                ratios.setdefault(f"{name} ({plan} plan)", []).append(value)
            print(
                f"{seed} | {plan} | {100 * paced_spent / limit:.2f} | "
                f"{100 * fcfs_spent / limit:.2f} | {lp:.1f} | {paced:.1f} | {fcfs:.1f} | "
                f"{none:.1f} | {paced / lp:.4f} | {paced / fcfs:.4f} | {extra:.3f} | {ceiling:.3f}"
            )
        ratios.setdefault("extra lp/fcfs", []).append(ceiling)
        print(f"  ({time.perf_counter() - started:.1f} s)")
    for name, values in ratios.items():
        print(f"{name}: min {min(values):.4f}, mean {np.mean(values):.4f}, max {max(values):.4f}")


def _decide_in_process(
    url: str, ids: list[str], prefix: str, ready: Any, go: Any, out: Any
) -> None:
    engine = create_engine_from_url(url)
    service = DecisionService(
        SqlDecisionStore(engine),
        catalog=CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600),
        policies=PolicyPool(),
    )
    service.catalog.current()
    ready.put(prefix)
    go.wait(timeout=300)
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    try:
        futures = [
            service.submit(
                DecisionAsk(
                    request_id=f"{prefix}{i}",
                    customer_id=c,
                    trigger="health_c_to_d",
                    channels=["email", "sms", "app_push", "letter", "app_inbox"],
                    now=now,
                )
            )
            for i, c in enumerate(ids)
        ]
        out.put(sum(f.result(timeout=300).contact for f in futures))
    finally:
        service.close()
        engine.dispose()


def concurrency(admin_url: str, requests: int, limit: int) -> None:
    """In a database of its own on the server of `admin_url`, dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"campopt_budget_bench_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _concurrency(
            admin.url.set(database=name).render_as_string(hide_password=False), requests, limit
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _concurrency(url: str, requests: int, limit: int) -> None:
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    budget = BudgetSpec(key="contacts", limit=limit, period="week")
    ids = [f"c{i}" for i in range(requests)]
    with session_scope(engine, write=True) as session:
        load_catalog(
            session, catalog=budgeted(read_catalog(EXAMPLE), budget), source="bench", actor="bench"
        )
        add_customers(
            session,
            customers=[
                {"id": c, "health_class": "D", "usage_index": 0.1, "time_zone": "Europe/Berlin"}
                for c in ids
            ],
            consents=[(c, ch) for c in ids for ch in ("email", "sms", "app_push", "letter")],
            now=datetime(2026, 11, 1, tzinfo=UTC),
        )
    context = mp.get_context("spawn")
    out, ready, go = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(target=_decide_in_process, args=(url, ids[n::2], f"p{n}-", ready, go, out))
        for n in range(2)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=300)
    started = time.perf_counter()
    go.set()
    contacts = [out.get(timeout=600) for _ in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join(timeout=60)
    with engine.connect() as connection:
        spent = connection.exec_driver_sql(
            "SELECT coalesce(sum(spent), 0) FROM budget_spend WHERE budget_key = 'contacts'"
        ).scalar()
        reserved = connection.exec_driver_sql(
            "SELECT count(*) FROM contact_history WHERE frame_key = %s", (FRAME,)
        ).scalar()
    engine.dispose()
    print(
        f"{requests} requests in 2 processes, {seconds:.1f} s; budget {limit}: counter {spent:g}, "
        f"contacts reserved {reserved} (per process {contacts}), "
        f"overshoot {max(0, int(reserved or 0) - limit)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--arrivals", type=int, default=20_000)
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL server URL (a database is made and dropped)"
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    if args.seeds:
        for scenario in SCENARIOS if args.scenario == "all" else [args.scenario]:
            simulation(scenario, args.seeds, args.arrivals)
    if args.postgres:
        concurrency(args.postgres, args.requests, args.limit)


if __name__ == "__main__":
    main()
