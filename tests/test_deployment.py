"""The container recipe says what the code accepts: every setting it passes exists, every
command it runs parses, and the topology is the one docs/deployment.md describes.

No container runtime runs here; `tests/system/test_several_machines.py` starts the same topology
as processes. These checks keep the recipe from drifting away from the code it packages.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner as ClickRunner
from mlflow.cli import cli as mlflow_cli
from typer.testing import CliRunner

from api.cli import app
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def dockerfile() -> list[str]:
    return (ROOT / "Dockerfile").read_text().splitlines()


def settings_names() -> set[str]:
    return {f"CAMPOPT_{name.upper()}" for name in Settings.model_fields}


def test_every_setting_the_recipe_passes_is_one_the_service_reads(
    compose: dict[str, Any],
) -> None:
    passed = set(re.findall(r"CAMPOPT_[A-Z_]+", "\n".join(dockerfile())))
    for service in compose["services"].values():
        passed |= {k for k in service.get("environment", {}) if k.startswith("CAMPOPT_")}
    assert passed, "the recipe configures nothing"
    assert passed <= settings_names(), passed - settings_names()


def test_the_topology_is_postgres_a_tracking_server_two_replicas_and_a_worker(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    replicas = [s for s in services.values() if s.get("command", [""])[0] == "serve"]
    workers = [s for s in services.values() if s.get("command") == ["worker"]]
    assert len(replicas) == 2
    assert len(workers) == 1
    for service in [*replicas, *workers]:
        assert service.get("command")[0] != "serve" or "--no-scheduler" in service["command"]
        env = service["environment"]
        assert "@postgres:5432/" in env["CAMPOPT_DATABASE_URL"]
        mlflow = services["mlflow"]["command"]
        port = mlflow[mlflow.index("--port") + 1]
        assert env["CAMPOPT_MLFLOW_TRACKING_URI"] == f"http://mlflow:{port}"
        assert set(service["depends_on"]) == {"postgres", "mlflow"}


def test_every_command_of_the_recipe_parses(compose: dict[str, Any]) -> None:
    cmd = next(line for line in dockerfile() if line.startswith("CMD "))
    commands = [yaml.safe_load(cmd.removeprefix("CMD "))]
    for name, service in compose["services"].items():
        if name in ("postgres", "mlflow"):
            continue
        commands.append(service["command"])
    documented = (ROOT / "compose.yaml").read_text() + (ROOT / "docs" / "deployment.md").read_text()
    for line in re.findall(r"docker compose exec \S+ campopt (.+)", documented):
        commands.append(shlex.split(line.split("#")[0]))
    assert len(commands) >= 6
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    server = compose["services"]["mlflow"]
    assert server["entrypoint"] == ["mlflow"]
    served = ClickRunner().invoke(mlflow_cli, [*server["command"], "--help"])
    assert served.exit_code == 0, served.output


def test_the_image_holds_every_package_and_the_catalog_it_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {line.split()[1] for line in dockerfile() if line.startswith("COPY ")}
    assert set(packages) <= copied
    catalog = next(
        line.split("CAMPOPT_CATALOG_PATH=")[1].split()[0]
        for line in dockerfile()
        if "CAMPOPT_CATALOG_PATH=" in line
    )
    assert catalog.startswith("/app/")
    assert (ROOT / catalog.removeprefix("/app/")).is_dir()
    assert any(line.startswith("COPY examples") for line in dockerfile())
    assert 'ENTRYPOINT ["campopt"]' in dockerfile()
