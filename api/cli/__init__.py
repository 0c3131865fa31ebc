"""`campopt`: the command line. Heavy imports (MLflow, FastAPI, VW) happen inside commands, and
a one-shot command starts no background thread: only `serve` and `worker` run the service."""

from __future__ import annotations

import typer

from api.cli import approvals, catalog, db, demo, frame, keys, logs, policy, serve, usage

app = typer.Typer(help="Self-learning campaign optimizer.", no_args_is_help=True)
app.add_typer(db.db_app, name="db")
app.add_typer(catalog.catalog_app, name="catalog")
app.command("demo")(demo.demo)
app.add_typer(logs.logs_app, name="logs")
app.command("evaluate")(logs.evaluate_command)
app.add_typer(policy.policy_app, name="policy")
app.add_typer(frame.frame_app, name="frame")
app.command("approvals")(approvals.approvals)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(usage.usage_app, name="usage")
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)


def main() -> None:
    app()
