"""`campopt evaluate` and `campopt logs`: the decision logs, estimated offline or exported."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from api.cli.common import DatabaseOption, console, engine_for, errors, fail, settings_for

if TYPE_CHECKING:
    from optimizer.ports.decision_logs import LogFilters

logs_app = typer.Typer(help="Decision logs: export for other tools.", no_args_is_help=True)

SinceOption = Annotated[
    datetime | None, typer.Option(help="from this time on (ISO 8601, UTC if no zone)")
]
UntilOption = Annotated[datetime | None, typer.Option(help="before this time")]
FrameOption = Annotated[str | None, typer.Option("--frame", help="only this frame's decisions")]
VersionOption = Annotated[str | None, typer.Option(help="only this policy version's decisions")]


def _filters(
    since: datetime | None, until: datetime | None, frame: str | None, version: str | None
) -> LogFilters:
    from optimizer.ports.decision_logs import LogFilters

    def aware(moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)

    return LogFilters(
        since=aware(since), until=aware(until), frame_key=frame, policy_version=version
    )


def evaluate_command(
    out: Annotated[Path, typer.Option(help="folder for the report and estimates.json")] = Path(
        "campopt-evaluation"
    ),
    log: Annotated[
        Path | None,
        typer.Option(help="a log in the flat layout with target__<name> columns (Parquet)"),
    ] = None,
    report_format: Annotated[str, typer.Option("--format", help="markdown or html")] = "html",
    engine_name: Annotated[
        str,
        typer.Option(
            "--engine",
            help="for --log: memory (the full report), partitions (file by file) or spark",
        ),
    ] = "memory",
    master: Annotated[
        str, typer.Option(help="Spark master for --engine spark, e.g. local[2] or spark://…")
    ] = "local[2]",
    later_share: Annotated[
        float, typer.Option(help="share of the newest logs to evaluate on (the rest trains)")
    ] = 0.5,
    since: SinceOption = None,
    until: UntilOption = None,
    frame: FrameOption = None,
    policy_version: VersionOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Estimate policies offline with confidence intervals (IPS, SNIPS, DM, DR, SNDR, Switch-DR).

    From the database: the logging policy, uniform, the best fixed combination, each frame's
    spec trained on the earlier logs, and the serving champions. From a file: its targets."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from api.evaluation import evaluate_database, evaluate_file, summary_lines

    if report_format not in ("markdown", "html"):
        raise fail(f"--format: {report_format!r} is not markdown or html")
    if engine_name not in ("memory", "partitions", "spark"):
        raise fail(f"--engine: {engine_name!r} is not memory, partitions or spark")
    if engine_name != "memory":
        if log is None:
            raise fail(f"--engine {engine_name}: needs --log (a Parquet log in the flat layout)")
        kind: Literal["partitions", "spark"] = "spark" if engine_name == "spark" else "partitions"
        _evaluate_partitioned(log, out, kind, master)
        return
    fmt: Literal["markdown", "html"] = "html" if report_format == "html" else "markdown"
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("starting", total=None)

            def step(text: str) -> None:
                progress.update(task, description=text)

            if log is not None:
                step(f"evaluating {log}")
                report = evaluate_file(log, out=out, fmt=fmt)
            else:
                from api.container import model_registry, serving_source
                from campaign_db.learning import SqlLearningStore

                settings = settings_for(database_url)
                engine = engine_for(database_url, upgrade=True)
                step("connecting to the registry")
                report = evaluate_database(
                    engine,
                    filters=_filters(since, until, frame, policy_version),
                    out=out,
                    fmt=fmt,
                    later_share=later_share,
                    source=(
                        None
                        if (registry := model_registry(settings)) is None
                        else serving_source(SqlLearningStore(engine), registry)
                    ),
                    step=step,
                )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{report.n} logged decisions evaluated (95 % intervals)")
    for row in summary_lines(report):
        console.print("  " + row, highlight=False)
    for warning in report.warnings:
        errors.print(f"[yellow]warning:[/] {warning}")
    console.print(f"report and estimates.json in {out}")


def _evaluate_partitioned(
    log: Path, out: Path, engine: Literal["partitions", "spark"], master: str
) -> None:
    from api.evaluation import evaluate_file_partitioned

    if engine == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise fail(
                "--engine spark: pyspark is not installed (pip install 'campaign-optimizer[spark]')"
            ) from None
    try:
        result = evaluate_file_partitioned(log, out=out, engine=engine, master=master)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    count = next(iter(next(iter(result.values())).values())).n
    console.print(f"{count} logged decisions evaluated on {engine} (95 % intervals)")
    for policy, by_name in result.items():
        for name in ("SNIPS", "DR"):
            estimate = by_name.get(name)
            if estimate is None:
                continue
            console.print(
                f"  {policy:14s} {name:>9s} {estimate.value:.4f} "
                f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]",
                highlight=False,
            )
    console.print(f"estimates.json in {out}")


@logs_app.command("export")
def logs_export(
    out: Annotated[Path, typer.Argument(help="a folder (parquet) or a file (dsjson)")],
    export_format: Annotated[str, typer.Option("--format", help="parquet or dsjson")] = "parquet",
    since: SinceOption = None,
    until: UntilOption = None,
    frame: FrameOption = None,
    policy_version: VersionOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Export policy decisions with final rewards: Parquet (flat layout, partitioned by day)
    for pandas or Spark, or DSJSON for VW's own tools."""
    from api.evaluation import export_logs

    if export_format not in ("parquet", "dsjson"):
        raise fail(f"--format: {export_format!r} is not parquet or dsjson")
    engine = engine_for(database_url)
    try:
        count = export_logs(
            engine,
            filters=_filters(since, until, frame, policy_version),
            out=out,
            fmt="parquet" if export_format == "parquet" else "dsjson",
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{count} decisions written to {out}")
