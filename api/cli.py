"""`campopt`: the command line. Heavy imports (MLflow, FastAPI, VW) happen inside commands."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings

if TYPE_CHECKING:
    from api.container import Container
    from api.evaluation import LogFilters
    from optimizer.lifecycle import PolicyLifecycle

app = typer.Typer(help="Self-learning campaign optimizer.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
catalog_app = typer.Typer(
    help="Building blocks and decision frames as files.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")

console = Console()
errors = Console(stderr=True)

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="overrides CAMPOPT_DATABASE_URL")
]


def _settings(database_url: str | None = None) -> Settings:
    settings = Settings()
    if database_url:
        settings.database_url = database_url
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# --- db --------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head", database_url: DatabaseOption = None) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from campaign_db import migrate
    from campaign_db.engine import create_engine_from_url

    engine = create_engine_from_url(_settings(database_url).database_url)
    migrate.upgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str, database_url: DatabaseOption = None) -> None:
    """Revert migrations down to REVISION (`base` empties the database)."""
    from campaign_db import migrate
    from campaign_db.engine import create_engine_from_url

    engine = create_engine_from_url(_settings(database_url).database_url)
    migrate.downgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Show the database's migration revision and the newest one this version ships."""
    from campaign_db import migrate
    from campaign_db.engine import create_engine_from_url

    engine = create_engine_from_url(_settings(database_url).database_url)
    console.print(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision()}")


# --- catalog ---------------------------------------------------------------------------------


def _read_catalog_or_exit(path: Path):  # type: ignore[no-untyped-def]
    from campaign_db.catalog import CatalogError, read_catalog

    try:
        return read_catalog(path)
    except CatalogError as exc:
        for problem in exc.problems:
            errors.print(f"[red]{problem}[/]", highlight=False, soft_wrap=True)
        raise fail(f"{len(exc.problems)} problem(s) in {path}; nothing was loaded") from None


@catalog_app.command("validate")
def catalog_validate(path: Path) -> None:
    """Check a catalog file or folder without touching the database."""
    catalog = _read_catalog_or_exit(path)
    console.print(
        f"[green]valid[/]: {len(catalog.triggers)} triggers, {len(catalog.offers)} offers, "
        f"{len(catalog.texts)} texts, {len(catalog.channels)} channels, "
        f"{len(catalog.send_times)} send times, {len(catalog.frames)} frames"
    )


@catalog_app.command("load")
def catalog_load(
    path: Path,
    actor: Annotated[str, typer.Option(help="who loads it (audit log)")] = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Load a catalog in one transaction; a changed frame becomes a new version."""
    catalog = _read_catalog_or_exit(path)
    from campaign_db.catalog import load_catalog
    from campaign_db.engine import create_engine_from_url, session_scope
    from campaign_db.migrate import upgrade

    engine = create_engine_from_url(_settings(database_url).database_url)
    upgrade(engine)
    with session_scope(engine, write=True) as session:
        report = load_catalog(session, catalog=catalog, source=str(path), actor=actor)
    if not report.changed:
        console.print("catalog unchanged")
        return
    console.print(f"catalog revision {report.revision} loaded from {path}")
    for section, count in report.created.items():
        if count or report.updated[section]:
            console.print(f"  {section}: {count} new, {report.updated[section]} updated")
    for version in report.frame_versions:
        console.print(f"  new frame version: {version}")
    for approval in report.approvals:
        console.print(f"  approved and active: {approval}")
    if report.actions_added:
        console.print(f"  {report.actions_added} new combinations")


@catalog_app.command("export")
def catalog_export(
    out: Annotated[Path | None, typer.Option(help="file to write; default stdout")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Write the current catalog (blocks and each frame's serving version) as YAML."""
    from campaign_db.catalog import dump_yaml, export_catalog
    from campaign_db.engine import create_engine_from_url, session_scope
    from campaign_db.migrate import upgrade

    engine = create_engine_from_url(_settings(database_url).database_url)
    upgrade(engine)
    with session_scope(engine) as session:
        text = dump_yaml(export_catalog(session))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"catalog written to {out}")


# --- demo ------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    out: Annotated[
        Path, typer.Option(help="output folder (database, report, summary.json)")
    ] = Path("campopt-demo"),
    customers: Annotated[int, typer.Option(min=100, help="simulated customers")] = 12_000,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 80,
    seed: Annotated[
        int,
        typer.Option(
            help="seed of the simulated world (customers, usage, responses); each decision "
            "samples with its own seed, so runs agree in their figures, not decision by decision"
        ),
    ] = 7,
    catalog: Annotated[Path | None, typer.Option(help="catalog file or folder")] = None,
    register: Annotated[
        bool, typer.Option(help="register the learned policies in a local MLflow store")
    ] = True,
) -> None:
    """Run the whole loop on a simulated population: a fresh SQLite database, the example
    catalog, decisions, feedback, rewards and online learning; then write a report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from api.demo import run_demo
    from optimizer.simulator.run import SimulationConfig

    path = catalog or Settings().catalog_path
    spec = _read_catalog_or_exit(path)
    config = SimulationConfig(customers=customers, days=days, seed=seed)
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
        table.add_row(arm, f"{100 * value:.2f} %")
    console.print(table)
    uplift = summary["holdout_uplift"]
    console.print(
        f"lift capture: [bold]{summary['lift_capture']:.0%}[/] of the oracle's lift over uniform"
        f" · beats best fixed: {summary['beats_best_fixed']}"
    )
    console.print(
        f"uplift against holdout: {100 * uplift['value']:.1f} points "
        f"(95 % CI {100 * uplift['ci_low']:.1f} to {100 * uplift['ci_high']:.1f})"
        f" · contact-cap violations: {summary['cap_violations']}"
    )
    console.print(
        f"{summary['decisions']} decisions, {summary['contacts']} contacts, "
        f"{summary['learned']} rewards learned, {summary['runtime_seconds']:.0f} s"
    )
    console.print(f"report: {result.report}  summary: {out / 'summary.json'}")


logs_app = typer.Typer(help="Decision logs: export for other tools.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")

SinceOption = Annotated[
    datetime | None, typer.Option(help="from this time on (ISO 8601, UTC if no zone)")
]
UntilOption = Annotated[datetime | None, typer.Option(help="before this time")]
FrameOption = Annotated[str | None, typer.Option("--frame", help="only this frame's decisions")]
VersionOption = Annotated[str | None, typer.Option(help="only this policy version's decisions")]


def _filters(
    since: datetime | None, until: datetime | None, frame: str | None, version: str | None
) -> LogFilters:
    from api.evaluation import LogFilters

    def aware(moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)

    return LogFilters(
        since=aware(since), until=aware(until), frame_key=frame, policy_version=version
    )


@app.command("evaluate")
def evaluate_command(
    out: Annotated[Path, typer.Option(help="folder for the report and estimates.json")] = Path(
        "campopt-evaluation"
    ),
    log: Annotated[
        Path | None,
        typer.Option(help="a log in the flat layout with target__<name> columns (Parquet)"),
    ] = None,
    report_format: Annotated[str, typer.Option("--format", help="markdown or html")] = "html",
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
                from campaign_db.engine import create_engine_from_url
                from campaign_db.migrate import upgrade

                settings = _settings(database_url)
                engine = create_engine_from_url(settings.database_url)
                upgrade(engine)
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
                        else serving_source(engine, registry)
                    ),
                    step=step,
                )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{report['n']} logged decisions evaluated (95 % intervals)")
    for row in summary_lines(report):
        console.print("  " + row, highlight=False)
    for warning in report["warnings"]:
        errors.print(f"[yellow]warning:[/] {warning}")
    console.print(f"report and estimates.json in {out}")


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
    from campaign_db.engine import create_engine_from_url

    if export_format not in ("parquet", "dsjson"):
        raise fail(f"--format: {export_format!r} is not parquet or dsjson")
    engine = create_engine_from_url(_settings(database_url).database_url)
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


policy_app = typer.Typer(
    help="Policy lifecycle: train, evaluate, promote, roll back.", no_args_is_help=True
)
frame_app = typer.Typer(help="Decision frames: approve, resume.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(frame_app, name="frame")
ActorOption = Annotated[str, typer.Option("--by", help="who does it (audit log)")]


def _services(database_url: str | None) -> Container:
    from api.container import build_container

    return build_container(_settings(database_url), background_checkpoints=False)


def _lifecycle_or_exit(services: Container) -> PolicyLifecycle:
    lifecycle = services.lifecycle()
    if lifecycle is None:
        raise fail("the model registry is disabled (CAMPOPT_MLFLOW_TRACKING_URI=disabled)")
    return lifecycle


def _print_gate(gate: dict) -> None:  # type: ignore[type-arg]
    colour = {"promote": "green", "reject": "red", "needs_approval": "yellow"}[gate["verdict"]]
    console.print(f"gate: [bold {colour}]{gate['verdict']}[/]")
    for check in gate["checks"]:
        mark = "[green]✓[/]" if check["passed"] else "[red]✗[/]"
        console.print(f"  {mark} {check['name']}: {check['detail']}", highlight=False)


@policy_app.command("train")
def policy_train(
    frame: Annotated[str, typer.Option("--frame", help="the frame whose policy to train")],
    spec: Annotated[
        Path | None, typer.Option(help="policy spec JSON (default: the frame's)")
    ] = None,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Train a candidate on the earlier logs, gate it against the champion on the newer ones,
    and register it (alias challenger) with its evidence in MLflow."""
    from optimizer.core.policy_spec import PolicySpec
    from optimizer.errors import DomainError

    candidate = None
    if spec is not None:
        try:
            candidate = PolicySpec.model_validate_json(spec.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise fail(f"{spec}: {exc}") from None
    services = _services(database_url)
    try:
        result = _lifecycle_or_exit(services).train(frame, spec=candidate, actor=actor)
    except (DomainError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        services.close()
    console.print(
        f"registered {frame}:{result.version} (challenger), evaluated on {result.rows} decisions"
    )
    _print_gate(result.gate)


@policy_app.command("evaluate")
def policy_evaluate(
    version_id: Annotated[str, typer.Argument(help="<policy>:<version>")],
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Re-evaluate a registered version against the champion on the newest logs."""
    from optimizer.errors import DomainError
    from optimizer.lifecycle import parse_version_id

    services = _services(database_url)
    try:
        name, version = parse_version_id(version_id)
        result = _lifecycle_or_exit(services).evaluate(name, version, actor=actor)
    except (DomainError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        services.close()
    _print_gate(result.gate)


@policy_app.command("promote")
def policy_promote(
    version_id: Annotated[str, typer.Argument(help="<policy>:<version>")],
    reason: Annotated[str, typer.Option(help="why (audit log)")] = "",
    approve: Annotated[
        bool, typer.Option(help="a manager approves a candidate that leaves its frame")
    ] = False,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Make a version champion; needs fresh evidence that passed the gate."""
    from optimizer.errors import DomainError
    from optimizer.lifecycle import parse_version_id

    services = _services(database_url)
    try:
        name, version = parse_version_id(version_id)
        result = _lifecycle_or_exit(services).promote(
            name, version, actor=actor, reason=reason, approved=approve
        )
    except DomainError as exc:
        raise fail(f"{exc.field}: {exc.message}") from None
    finally:
        services.close()
    console.print(f"{name}:{result.version} is champion (replaced {result.replaced})")


@policy_app.command("rollback")
def policy_rollback(
    policy: Annotated[str, typer.Argument(help="the policy (frame key)")],
    to_version: Annotated[str | None, typer.Option("--to", help="version to serve")] = None,
    reason: Annotated[str, typer.Option(help="why (audit log)")] = "",
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Champion goes back to --to, or to what the last promotion replaced."""
    from optimizer.errors import DomainError

    services = _services(database_url)
    try:
        result = _lifecycle_or_exit(services).rollback(
            policy, actor=actor, reason=reason, to_version=to_version
        )
    except DomainError as exc:
        raise fail(f"{exc.field}: {exc.message}") from None
    finally:
        services.close()
    console.print(f"{policy}:{result.version} is champion again (was {result.replaced})")


@frame_app.command("approve")
def frame_approve(
    key: str,
    version: int,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Approve a draft frame version (run by someone with the approver's permission)."""
    from campaign_db.catalog import approve_frame
    from campaign_db.engine import create_engine_from_url, session_scope
    from optimizer.core.values import utcnow

    engine = create_engine_from_url(_settings(database_url).database_url)
    try:
        with session_scope(engine, write=True) as session:
            approve_frame(session, key=key, version=version, approver=actor, now=utcnow())
    except (LookupError, ValueError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    console.print(f"frame {key} v{version} approved by {actor} and active")


@frame_app.command("resume")
def frame_resume(
    key: str,
    reason: Annotated[str, typer.Option(help="why it is safe again (audit log)")],
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Leave safe mode after a kill switch."""
    from campaign_db.engine import create_engine_from_url
    from optimizer.guardrails import resume

    engine = create_engine_from_url(_settings(database_url).database_url)
    resume(engine, key, actor=actor, reason=reason)
    console.print(f"frame {key} back in normal mode")


keys_app = typer.Typer(help="API keys and their scopes.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", help="decide, simulate, feedback, read_logs, approve or admin (repeat)"
        ),
    ],
    actor: Annotated[str, typer.Option(help="who creates it (audit log)")] = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from api.auth import create_key
    from campaign_db.engine import create_engine_from_url
    from campaign_db.migrate import upgrade

    engine = create_engine_from_url(_settings(database_url).database_url)
    upgrade(engine)
    try:
        key_id, key = create_key(engine, name=name, scopes=scope, actor=actor)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"key {key_id} for {name} ({', '.join(sorted(set(scope)))}); keep it safe:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys (never the keys themselves)."""
    from campaign_db import queries
    from campaign_db.engine import create_engine_from_url, session_scope
    from campaign_db.migrate import upgrade

    engine = create_engine_from_url(_settings(database_url).database_url)
    upgrade(engine)
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    with session_scope(engine) as session:
        for key in queries.api_keys(session):
            table.add_row(
                str(key.id),
                key.name,
                key.prefix + "…",
                ", ".join(key.scopes),
                key.created_at.strftime("%Y-%m-%d %H:%M"),
                key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
            )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: int,
    actor: Annotated[str, typer.Option(help="who revokes it (audit log)")] = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key; replicas stop accepting it within seconds."""
    from campaign_db import queries
    from campaign_db.engine import create_engine_from_url, session_scope
    from optimizer.core.values import utcnow

    engine = create_engine_from_url(_settings(database_url).database_url)
    with session_scope(engine, write=True) as session:
        key = queries.revoke_api_key(session, key_id=key_id, actor=actor, now=utcnow())
    if key is None:
        raise fail(f"key_id: no key {key_id}")
    console.print(f"key {key_id} ({key.name}) revoked")


usage_app = typer.Typer(help="Usage data and health classes.", no_args_is_help=True)
app.add_typer(usage_app, name="usage")


@usage_app.command("import")
def usage_import(
    path: Path,
    database_url: DatabaseOption = None,
    emit: Annotated[bool, typer.Option(help="make the decisions for worsening classes")] = True,
) -> None:
    """Import usage from CSV or Parquet: customer_id, recency_days, sessions_30d, minutes_30d
    and optionally observed_at (with time zone)."""
    from api.usage_files import UsageFileError, read_usage_file

    try:
        rows = read_usage_file(path)
    except UsageFileError as exc:
        raise fail(str(exc)) from None
    settings = _settings(database_url)
    from api.container import build_container
    from optimizer import outbound
    from optimizer.errors import DomainError

    services = build_container(settings, background_checkpoints=False)
    services.load_champions()  # decisions for worsening classes use them, not untrained ones
    try:
        results = outbound.record_usage(
            services.engine, services.decisions, rows=rows, config=settings.usage_index, emit=emit
        )
    except DomainError as exc:
        raise fail(f"{path}: {exc.field}: {exc.message}; nothing was imported") from None
    finally:
        services.close()
    changed = [r for r in results if r.health_class != r.previous_class]
    worse = [r for r in changed if r.trigger]
    console.print(
        f"{len(results)} customers updated, {len(changed)} changed class, "
        f"{len(worse)} worsened and emitted a trigger"
    )


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="server processes")] = 2,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    scheduler: Annotated[
        bool, typer.Option(help="also run the jobs (one process leads, the others wait)")
    ] = True,
) -> None:
    """Run the HTTP API (settings from CAMPOPT_* environment variables)."""
    import os

    import uvicorn

    if not scheduler:
        os.environ["CAMPOPT_SCHEDULER_ENABLED"] = "false"
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="campopt-metrics-")
    os.environ.setdefault("CAMPOPT_LOG_JSON", "true")
    settings = Settings()
    if settings.mlflow_tracking_uri != "disabled":
        # before the workers start: each would otherwise create a new local store at once
        from optimizer.registry import RegistryError, ensure_store

        try:
            ensure_store(settings.mlflow_tracking_uri, artifact_root=settings.artifact_root)
        except RegistryError as exc:
            errors.print(f"[yellow]warning:[/] {exc.message}", highlight=False, soft_wrap=True)
    address = f"[{host}]" if ":" in host else host
    plural = "worker" if workers == 1 else "workers"
    console.print(f"serving on http://{address}:{port} ({workers} {plural})", highlight=False)
    sys.stdout.flush()

    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


@app.command("worker")
def worker(
    database_url: DatabaseOption = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port (default: off)")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="interface for /metrics")] = "127.0.0.1",
) -> None:
    """Run the scheduled jobs (reward finalisation, online learning, checkpoints, health-trigger
    emission, guardrails, training, retention) without HTTP. Several workers may run: one leads,
    the others wait and take over within seconds when it dies."""
    import os
    import signal
    import threading

    os.environ.setdefault("CAMPOPT_LOG_JSON", "true")
    from api.container import build_container
    from api.observability import configure_logging, serve_metrics

    settings = _settings(database_url)
    settings.scheduler_enabled = True
    if settings.log_json:
        configure_logging(settings.log_level)
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    services = build_container(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    services.start()
    console.print("worker started; waiting for the leader lock", highlight=False)
    try:
        stop.wait()
    finally:
        services.close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
