"""What every command shares: settings, the consoles, failing with a message, and building only
the parts a one-shot command needs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from api.settings import Settings

if TYPE_CHECKING:
    from api.container import Container
    from campaign_db.engine import Engine
    from optimizer.core.catalog import CatalogSpec

console = Console()
errors = Console(stderr=True)

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="overrides CAMPOPT_DATABASE_URL")
]


def settings_for(database_url: str | None = None) -> Settings:
    settings = Settings()
    if database_url:
        settings.database_url = database_url
    return settings


def engine_for(database_url: str | None, *, upgrade: bool = False) -> Engine:
    """The database alone, migrated first if `upgrade`."""
    from campaign_db.engine import create_engine_from_url

    engine = create_engine_from_url(settings_for(database_url).database_url)
    if upgrade:
        from campaign_db.migrate import upgrade as migrate_up

        migrate_up(engine)
    return engine


def container_for(settings: Settings) -> Container:
    """The services of a one-shot command: built, never started (no checkpoint thread, no
    reloader, no scheduler). Close it when done."""
    from api.container import build_container

    return build_container(settings, background_checkpoints=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def read_catalog_or_exit(path: Path) -> CatalogSpec:
    from campaign_db.catalog import CatalogError, read_catalog

    try:
        return read_catalog(path)
    except CatalogError as exc:
        for problem in exc.problems:
            errors.print(f"[red]{problem}[/]", highlight=False, soft_wrap=True)
        raise fail(f"{len(exc.problems)} problem(s) in {path}; nothing was loaded") from None
