"""`campopt approvals`: what waits for a manager, in a terminal (the cockpit's inbox)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import DatabaseOption, console, container_for, fail, settings_for


def approvals(
    policies: Annotated[
        bool,
        typer.Option(
            "--policies/--no-policies",
            help="also ask the model registry for waiting policies (loads MLflow: slower)",
        ),
    ] = True,
    database_url: DatabaseOption = None,
) -> None:
    """List draft frame versions (with what they change) and policies waiting for approval."""
    from rich.table import Table

    from optimizer.cockpit import frame_changes
    from optimizer.core.values import FrameStatus
    from optimizer.errors import DomainError

    settings = settings_for(database_url)
    if not policies:
        settings.mlflow_tracking_uri = "disabled"
    container = container_for(settings)
    try:
        versions = container.governance.versions()
        frames = Table(title="Frame versions waiting", title_justify="left")
        for column in ("frame", "version", "drafted", "serving", "changes"):
            frames.add_column(column)
        for draft in (v for v in versions if v.status == FrameStatus.draft):
            serving = next(
                (v for v in versions if v.key == draft.key and v.status == FrameStatus.active),
                None,
            )
            spec = container.governance.spec(key=draft.key, version=draft.version)
            old = (
                container.governance.spec(key=draft.key, version=serving.version)
                if serving
                else None
            )
            changes = frame_changes(old, spec) if spec is not None else []
            frames.add_row(
                draft.key,
                str(draft.version),
                f"{draft.created_at:%Y-%m-%d %H:%M}",
                f"v{serving.version}" if serving else "—",
                "\n".join(f"{c.field}: {c.serving} → {c.draft}" for c in changes) or "—",
            )
        console.print(frames if frames.row_count else "No frame version is waiting.")
        lifecycle = container.lifecycle()
        if lifecycle is None:
            return
        try:
            waiting = lifecycle.waiting(sorted({v.key for v in versions}))
        except DomainError as exc:
            raise fail(exc.message) from None
        table = Table(title="Policies waiting", title_justify="left")
        for column in ("policy", "serving", "evidence", "evaluated"):
            table.add_column(column)
        for p in waiting:
            table.add_row(
                f"{p.policy}:{p.version}",
                p.serving or "—",
                p.evidence_at or "—",
                f"{p.evaluated_rows} decisions, {p.evaluated}",
            )
        console.print(table if table.row_count else "No policy is waiting.")
    finally:
        container.close()
