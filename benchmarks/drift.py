"""Drift on the whole simulated loop: found how fast, how often falsely, and what it earns.

Targets (issue 16): after an abrupt change in the simulator, detection within 2,000 decisions
in the median, at most 1 false alarm per 1 million stationary decisions, and lift capture in
the 20,000 decisions after the change at least 1.2 x without detection.

For each seed the demo (`api.demo.run_demo`, the example catalog, every frame's default tuned
policy) runs twice with the same world, in which every health class starts to answer offers as
its mirror class does (A as D, B as C) on `--change-day`: once with drift detection (the
default) and once with `tuning.detect_drift: false`. Per frame, an alarm's delay is the number
of that frame's decisions made after the change whose rewards the learner had learned when it
raised the alarm (a reward is learned only when its attribution window closes, so a few days of
decisions pass before any evidence arrives: the simulated days from change to alarm are shown
too). Alarms raised on stationary rewards only (before the change, or after it but before any
post-change reward was learned) are false alarms, counted against every reward learned before
the change. Lift capture after the change, (policy - uniform) / (oracle within cost limits -
uniform), is over the first 20,000 policy decisions from the change day, on the changed truth.

A false-alarm rate near one per million cannot be seen in a few demo runs; the i.i.d. check is
`python -m benchmarks.drift --stationary 1000000`, which feeds the detector residuals of
Bernoulli rewards at several rates.

    python -m benchmarks.drift [--seeds 1 2 3 4 5] [--customers 12000] [--days 80]
        [--change-day 40] [--stationary N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from api.demo import run_demo
from api.settings import Settings
from campaign_db.catalog import read_catalog
from campaign_db.engine import create_engine_from_url
from optimizer.core.catalog import CatalogSpec
from optimizer.core.drift import DriftMonitor
from optimizer.core.policy_spec import PolicySpec, TuningSpec
from optimizer.simulator import metrics
from optimizer.simulator.run import SimulationConfig

console = Console(width=120)
AFTER = 20_000


def blind(catalog: CatalogSpec) -> CatalogSpec:
    """Every frame's policy as it is, without the drift test."""
    frames = []
    for frame in catalog.frames:
        spec = frame.policy or PolicySpec()
        tuning = spec.tuning or TuningSpec()
        policy = spec.model_copy(
            update={"tuning": tuning.model_copy(update={"detect_drift": False})}
        )
        frames.append(frame.model_copy(update={"policy": policy}))
    return CatalogSpec.model_validate(catalog.model_copy(update={"frames": frames}).model_dump())


def alarms(database: Path, change: datetime) -> list[dict[str, Any]]:
    """Every drift alarm: frame, simulated time of the alarm and post-change rewards learned."""
    engine = create_engine_from_url(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT a.subject, a.details FROM audit_log a "
                    "WHERE a.action = 'policy.drift_found' ORDER BY a.id"
                )
            ).all()
            out = []
            for policy_version, details in rows:
                subject = policy_version.split(":")[0]
                found = details if isinstance(details, dict) else json.loads(details)
                sequence = int(found["reward_sequence"])
                at = connection.execute(
                    text("SELECT finalized_at FROM reward WHERE sequence = :s"), {"s": sequence}
                ).scalar_one()
                evidence = connection.execute(
                    text(
                        "SELECT count(*) FROM reward r JOIN decision_log d ON d.id = r.decision_id "
                        "WHERE r.sequence <= :s AND d.frame_key = :f AND d.created_at >= :c"
                    ),
                    {"s": sequence, "f": subject, "c": stamp(change)},
                ).scalar_one()
                out.append(
                    {
                        "frame": subject,
                        "at": datetime.fromisoformat(str(at)).replace(tzinfo=None),
                        "evidence": int(evidence),
                    }
                )
            return out
    finally:
        engine.dispose()


def stationary_rewards(database: Path, change: datetime) -> int:
    """Final rewards the learner learned before the change: what false alarms are counted on."""
    engine = create_engine_from_url(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM reward WHERE sequence IS NOT NULL "
                        "AND finalized_at <= :c"
                    ),
                    {"c": stamp(change)},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def stamp(moment: datetime) -> str:
    """A naive UTC time as the SQLite store writes it, for comparisons in plain SQL."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def lift_after(result: Any, change_day: int) -> float:
    stats = result.stats
    days = np.asarray(stats.day)
    first = int(np.searchsorted(days, change_day))
    rows = slice(first, min(first + AFTER, len(days)))
    return metrics.arm_values(stats, rows=rows).lift_capture


def stationary(n: int) -> None:
    rng = np.random.default_rng(2026)
    table = Table("reward rate", "residuals", "false alarms", title="i.i.d. stationary residuals")
    for p in (0.03, 0.1, 0.15, 0.25, 0.4):
        monitor = DriftMonitor()
        x = (rng.random(n) < p) - p
        found = sum(1 for r in x if monitor.add(float(r)) == "alarm")
        table.add_row(f"{p:.2f}", f"{n:,}", str(found))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--days", type=int, default=80)
    parser.add_argument("--change-day", type=int, default=40)
    parser.add_argument("--stationary", type=int, default=0, help="i.i.d. residuals per rate")
    args = parser.parse_args()
    if args.stationary:
        stationary(args.stationary)
        return
    watching = read_catalog(Settings().catalog_path)
    unwatched = blind(watching)
    table = Table(
        "seed",
        "frame",
        "alarm day",
        "delay (post-change decisions learned)",
        "false alarms (stationary rewards)",
        title=f"Alarms after the change on day {args.change_day}",
    )
    lifts = Table("seed", "with detection", "without", "ratio", title="Lift capture after change")
    delays: list[int] = []
    false_alarms = stationary_rewards_total = 0
    ratios = []
    started = time.perf_counter()
    for seed in args.seeds:
        config = SimulationConfig(
            customers=args.customers, days=args.days, seed=seed, change_day=args.change_day
        )
        change = datetime.combine(config.start + timedelta(days=args.change_day), dt_time(0))
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            on = run_demo(catalog=watching, out=Path(a), config=config, register=False)
            off = run_demo(catalog=unwatched, out=Path(b), config=config, register=False)
            found = alarms(on.database, change)
            stationary_rewards_total += stationary_rewards(on.database, change)
            if alarms(off.database, change):
                raise SystemExit("a policy without the drift test raised an alarm")
        by_frame: dict[str, list[dict[str, Any]]] = {}
        for alarm in found:
            by_frame.setdefault(alarm["frame"], []).append(alarm)
        for frame in sorted(f.key for f in watching.frames):
            mine = by_frame.get(frame, [])
            # an alarm raised before any post-change reward was learned is a false alarm too
            late = [x for x in mine if x["at"] >= change and x["evidence"] > 0]
            early = [x for x in mine if x not in late]
            false_alarms += len(early)
            if late:
                delays.append(late[0]["evidence"])
            table.add_row(
                str(seed),
                frame,
                str((late[0]["at"] - change).days + args.change_day) if late else "-",
                str(late[0]["evidence"]) if late else "not found",
                str(len(early)),
            )
        with_test = lift_after(on.simulation, args.change_day)
        without = lift_after(off.simulation, args.change_day)
        ratios.append(with_test / without if without > 0 else float("nan"))
        lifts.add_row(str(seed), f"{with_test:.3f}", f"{without:.3f}", f"{ratios[-1]:.2f}")
        console.print(table)
        console.print(lifts)
    frames_total = len(args.seeds) * len(watching.frames)
    console.print(
        f"found {len(delays)} of {frames_total} changes; median delay "
        f"{statistics.median(delays) if delays else float('nan'):.0f} decisions (target <= 2,000)"
        f" · {false_alarms} false alarms in {stationary_rewards_total:,} rewards learned before "
        f"the change · lift capture ratio after the "
        f"change {np.nanmean(ratios):.2f} (target >= 1.2) · {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
