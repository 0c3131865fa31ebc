"""`campopt keys`: API keys and their scopes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from api.cli.common import DatabaseOption, console, engine_for, fail

keys_app = typer.Typer(help="API keys and their scopes.", no_args_is_help=True)


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

    engine = engine_for(database_url, upgrade=True)
    try:
        key_id, key = create_key(engine, name=name, scopes=scope, actor=actor)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"key {key_id} for {name} ({', '.join(sorted(set(scope)))}); keep it safe:")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys (never the keys themselves)."""
    from campaign_db.keys import SqlKeyStore

    engine = engine_for(database_url, upgrade=True)
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for key in SqlKeyStore(engine).all():
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
    from campaign_db.keys import SqlKeyStore
    from optimizer.core.values import utcnow

    key = SqlKeyStore(engine_for(database_url)).revoke(key_id, actor=actor, at=utcnow())
    if key is None:
        raise fail(f"key_id: no key {key_id}")
    console.print(f"key {key_id} ({key.name}) revoked")
