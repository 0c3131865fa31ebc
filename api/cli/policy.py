"""`campopt policy`: train, evaluate, promote and roll back policies (needs the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.common import DatabaseOption, console, container_for, fail, settings_for

if TYPE_CHECKING:
    from api.container import Container
    from offline_eval.gate import GateResult
    from optimizer.lifecycle import PolicyLifecycle

policy_app = typer.Typer(
    help="Policy lifecycle: train, evaluate, promote, roll back.", no_args_is_help=True
)
ActorOption = Annotated[str, typer.Option("--by", help="who does it (audit log)")]


def _container(database_url: str | None) -> Container:
    return container_for(settings_for(database_url))


def _lifecycle_or_exit(container: Container) -> PolicyLifecycle:
    lifecycle = container.lifecycle()
    if lifecycle is None:
        raise fail("the model registry is disabled (CAMPOPT_MLFLOW_TRACKING_URI=disabled)")
    return lifecycle


def _print_gate(gate: GateResult) -> None:
    colour = {"promote": "green", "reject": "red", "needs_approval": "yellow"}[gate.verdict]
    console.print(f"gate: [bold {colour}]{gate.verdict}[/]")
    for check in gate.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        console.print(f"  {mark} {check.name}: {check.detail}", highlight=False)


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
    container = _container(database_url)
    try:
        result = _lifecycle_or_exit(container).train(frame, spec=candidate, actor=actor)
    except (DomainError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        container.close()
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

    container = _container(database_url)
    try:
        name, version = parse_version_id(version_id)
        result = _lifecycle_or_exit(container).evaluate(name, version, actor=actor)
    except (DomainError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        container.close()
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

    container = _container(database_url)
    try:
        name, version = parse_version_id(version_id)
        result = _lifecycle_or_exit(container).promote(
            name, version, actor=actor, reason=reason, approved=approve
        )
    except DomainError as exc:
        raise fail(f"{exc.field}: {exc.message}") from None
    finally:
        container.close()
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

    container = _container(database_url)
    try:
        result = _lifecycle_or_exit(container).rollback(
            policy, actor=actor, reason=reason, to_version=to_version
        )
    except DomainError as exc:
        raise fail(f"{exc.field}: {exc.message}") from None
    finally:
        container.close()
    console.print(f"{policy}:{result.version} is champion again (was {result.replaced})")
