"""Harm in the reward: fewer unsubscribes for few conversions, on the whole simulated loop.

Target (issue 16): with the simulator's unsubscribe cost switched on, unsubscribes drop by at
least 30 % at no more than 5 % fewer conversions against the conversion-only reward.

For each seed the demo (`api.demo.run_demo`: decisions, sends, unsubscribes, conversions,
attribution, reward finalisation, online learning), with customers who unsubscribe by channel,
class and tone (`--annoyance`), runs twice on the example catalog: once as
written (reward = conversion) and once with every frame pricing an unsubscribe within the window
at `--cost` conversions (`attribution.harm.unsubscribe`). Both runs face the same population,
usage and triggers; they differ only in what the learner is rewarded for. The figures are the
ground truth's expectations over every policy decision of a run (take-rate of the chosen
combination, organic rate for no contact; unsubscribe probability of the chosen contact), so the
comparison carries no reaction noise; realised counts are printed beside them.

    python -m benchmarks.harm_reward [--seeds 1 2 3 4 5] [--cost 5] [--customers 12000]
        [--days 80]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from api.demo import priced_unsubscribes, run_demo
from api.settings import Settings
from campaign_db.catalog import read_catalog
from optimizer.core.catalog import CatalogSpec
from optimizer.simulator.run import SimulationConfig

console = Console(width=120)


def run(catalog: CatalogSpec, config: SimulationConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return run_demo(catalog=catalog, out=Path(tmp), config=config, register=False).summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--cost", type=float, default=5.0, help="price of one unsubscribe")
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--days", type=int, default=80)
    args = parser.parse_args()
    plain = read_catalog(Settings().catalog_path)
    priced = priced_unsubscribes(plain, args.cost)
    table = Table(
        "seed",
        "conversions (expected)",
        "with harm",
        "ratio",
        "unsubscribes (expected)",
        "with harm",
        "drop",
        "realised unsub.",
        "lift capture",
        title=f"Conversion-only reward vs unsubscribe priced at {args.cost:g} conversions",
    )
    ratios, drops = [], []
    started = time.perf_counter()
    for seed in args.seeds:
        config = SimulationConfig(
            customers=args.customers, days=args.days, seed=seed, annoyance=True
        )
        a, b = run(plain, config), run(priced, config)
        ratio = b["expected_conversions"] / a["expected_conversions"]
        drop = 1.0 - b["expected_unsubscribes"] / a["expected_unsubscribes"]
        ratios.append(ratio)
        drops.append(drop)
        table.add_row(
            str(seed),
            f"{a['expected_conversions']:.0f}",
            f"{b['expected_conversions']:.0f}",
            f"{ratio:.3f}",
            f"{a['expected_unsubscribes']:.1f}",
            f"{b['expected_unsubscribes']:.1f}",
            f"{100 * drop:.1f} %",
            f"{a['unsubscribes']} → {b['unsubscribes']}",
            f"{a['lift_capture']:.3f} → {b['lift_capture']:.3f}",
        )
    console.print(table)
    console.print(
        f"mean conversion ratio {np.mean(ratios):.3f} (min {min(ratios):.3f}; target ≥ 0.95) · "
        f"mean unsubscribe drop {100 * np.mean(drops):.1f} % (min {100 * min(drops):.1f} %; "
        f"target ≥ 30 %) · {len(args.seeds)} seeds x 2 runs in "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
