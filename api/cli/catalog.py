"""`campopt catalog`: building blocks and decision frames as files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import DatabaseOption, console, engine_for, read_catalog_or_exit

catalog_app = typer.Typer(
    help="Building blocks and decision frames as files.", no_args_is_help=True
)


@catalog_app.command("validate")
def catalog_validate(path: Path) -> None:
    """Check a catalog file or folder without touching the database."""
    catalog = read_catalog_or_exit(path)
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
    catalog = read_catalog_or_exit(path)
    from campaign_db.catalog import load_catalog
    from campaign_db.engine import session_scope

    engine = engine_for(database_url, upgrade=True)
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
    from campaign_db.engine import session_scope

    engine = engine_for(database_url, upgrade=True)
    with session_scope(engine) as session:
        text = dump_yaml(export_catalog(session))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"catalog written to {out}")
