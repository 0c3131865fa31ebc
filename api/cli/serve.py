"""`campopt serve` and `campopt worker`: the long-running processes, the only commands that
start the service's background threads."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.cli.common import DatabaseOption, console, errors, settings_for
from api.settings import Settings


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
    if workers > 1 and not os.environ.get("CAMPOPT_UI_SESSION_SECRET"):
        # one secret for this server's workers, or a cockpit session signed by one worker is
        # refused by the next; replicas need one set in their settings
        import secrets

        os.environ["CAMPOPT_UI_SESSION_SECRET"] = secrets.token_urlsafe(32)
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

    settings = settings_for(database_url)
    settings.scheduler_enabled = True
    if settings.log_json:
        configure_logging(settings.log_level)
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    container = build_container(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    container.start()
    console.print("worker started; waiting for the leader lock", highlight=False)
    try:
        stop.wait()
    finally:
        container.close()
