"""`campopt db`: schema migrations."""

from __future__ import annotations

import typer

from api.cli.common import DatabaseOption, console, engine_for

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head", database_url: DatabaseOption = None) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from campaign_db import migrate

    engine = engine_for(database_url)
    migrate.upgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: str, database_url: DatabaseOption = None) -> None:
    """Revert migrations down to REVISION (`base` empties the database)."""
    from campaign_db import migrate

    engine = engine_for(database_url)
    migrate.downgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Show the database's migration revision and the newest one this version ships."""
    from campaign_db import migrate

    engine = engine_for(database_url)
    console.print(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision()}")
