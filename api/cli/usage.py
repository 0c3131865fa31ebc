"""`campopt usage`: usage data and health classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import DatabaseOption, console, container_for, fail, settings_for

usage_app = typer.Typer(help="Usage data and health classes.", no_args_is_help=True)


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
    settings = settings_for(database_url)
    from campaign_db.outbox import SqlOutboxStore
    from optimizer import outbound
    from optimizer.errors import DomainError

    container = container_for(settings)
    container.load_champions()  # decisions for worsening classes use them, not untrained ones
    try:
        results = outbound.record_usage(
            SqlOutboxStore(container.engine),
            container.decisions,
            rows=rows,
            config=settings.usage_index,
            emit=emit,
        )
    except DomainError as exc:
        raise fail(f"{path}: {exc.field}: {exc.message}; nothing was imported") from None
    finally:
        container.close()
    changed = [r for r in results if r.health_class != r.previous_class]
    worse = [r for r in changed if r.trigger]
    console.print(
        f"{len(results)} customers updated, {len(changed)} changed class, "
        f"{len(worse)} worsened and emitted a trigger"
    )
