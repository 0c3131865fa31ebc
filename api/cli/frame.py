"""`campopt frame`: approve a decision frame's version, or resume it after a kill switch."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import DatabaseOption, console, engine_for, fail
from api.cli.policy import ActorOption

frame_app = typer.Typer(help="Decision frames: approve, resume.", no_args_is_help=True)


@frame_app.command("approve")
def frame_approve(
    key: str,
    version: int,
    actor: ActorOption = "cli",
    database_url: DatabaseOption = None,
) -> None:
    """Approve a draft frame version (run by someone with the approver's permission)."""
    from campaign_db.governance import SqlGovernanceStore
    from optimizer.core.values import utcnow

    frames = SqlGovernanceStore(engine_for(database_url))
    try:
        frames.approve(key=key, version=version, approver=actor, now=utcnow())
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
    from campaign_db.audit import SqlAuditLog
    from campaign_db.governance import SqlGovernanceStore
    from optimizer.guardrails import GuardrailMonitor

    engine = engine_for(database_url)
    GuardrailMonitor(SqlGovernanceStore(engine), SqlAuditLog(engine)).resume(
        key, actor=actor, reason=reason
    )
    console.print(f"frame {key} back in normal mode")
