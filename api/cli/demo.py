"""`campopt demo`: the whole loop on a simulated population."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.cli.common import console, read_catalog_or_exit
from api.settings import Settings


def demo(
    out: Annotated[
        Path, typer.Option(help="output folder (database, report, summary.json)")
    ] = Path("campopt-demo"),
    customers: Annotated[int, typer.Option(min=100, help="simulated customers")] = 12_000,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 80,
    seed: Annotated[
        int,
        typer.Option(
            help="seed of the simulated world (customers, usage, responses) and of the "
            "decision ids each decision samples by: the same seed gives the same figures"
        ),
    ] = 7,
    catalog: Annotated[Path | None, typer.Option(help="catalog file or folder")] = None,
    register: Annotated[
        bool, typer.Option(help="register the learned policies in a local MLflow store")
    ] = True,
    unsubscribe_cost: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1000.0,
            help="price an unsubscribe within the window at this much reward in every frame "
            "(a conversion is 1 in a binary frame); the frames' own harm costs otherwise",
        ),
    ] = None,
    annoyance: Annotated[
        bool,
        typer.Option(
            help="simulated customers unsubscribe by channel, health class and tone (push and "
            "SMS put healthy customers off) instead of at a flat rate"
        ),
    ] = False,
) -> None:
    """Run the whole loop on a simulated population: a fresh SQLite database, the example
    catalog, decisions, feedback, rewards and online learning; then write a report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from api.demo import priced_unsubscribes, run_demo
    from optimizer.simulator.report import ARM_LABELS
    from optimizer.simulator.run import SimulationConfig

    path = catalog or Settings().catalog_path
    spec = read_catalog_or_exit(path)
    if unsubscribe_cost is not None:
        spec = priced_unsubscribes(spec, unsubscribe_cost)
    config = SimulationConfig(customers=customers, days=days, seed=seed, annoyance=annoyance)
    with Progress(
        TextColumn("[bold]simulating[/]"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("days", total=days)
        result = run_demo(
            catalog=spec,
            out=out,
            config=config,
            register=register,
            on_day=lambda day: progress.update(task, completed=day),
        )
    summary = result.summary
    table = Table("arm", "expected conversion rate (last 20 %)", title="Take-rates")
    for arm, value in summary["conversion_rate"].items():
        table.add_row(ARM_LABELS.get(arm, arm), f"{100 * value:.2f} %")
    console.print(table)
    uplift = summary["holdout_uplift"]
    console.print(
        f"lift capture: [bold]{summary['lift_capture']:.2f}[/] (within the frames' cost limits);"
        f" {summary['lift_capture_unconstrained']:.2f} against the unconstrained oracle"
        f" · beats best fixed: {summary['beats_best_fixed']}"
    )
    if summary["best_fixed_over_cost_limit"]:
        console.print(
            "best fixed combination above its frame's cost limit in: "
            + ", ".join(summary["best_fixed_over_cost_limit"])
        )
    console.print(
        f"uplift against holdout: {100 * uplift['value']:.1f} points "
        f"(95 % CI {100 * uplift['ci_low']:.1f} to {100 * uplift['ci_high']:.1f})"
        f" · contact-cap violations: {summary['cap_violations']}"
    )
    console.print(
        f"{summary['decisions']} decisions, {summary['contacts']} contacts, "
        f"{summary['unsubscribes']} unsubscribes, "
        f"{summary['learned']} rewards learned, {summary['runtime_seconds']:.0f} s"
    )
    console.print(f"report: {result.report}  summary: {out / 'summary.json'}")
