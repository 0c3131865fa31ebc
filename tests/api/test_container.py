"""The composition root: one-shot commands start no background thread, and each route gets the
one typed dependency it declares from the container."""

from __future__ import annotations

import asyncio
import gc
import inspect
import subprocess
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from api import deps
from api.auth import KeyVerifier, require
from api.cli import app
from api.container import Container, build_container
from api.readiness import ReadinessProbe, ReadinessReport
from api.settings import EXAMPLE_CATALOG, Settings
from optimizer.decisions import DecisionService
from optimizer.errors import ConflictError
from optimizer.lifecycle import PolicyLifecycle
from optimizer.serving import CatalogCache
from tests.api.test_decisions_api import add_customer
from tests.conftest import engine_url

T = TypeVar("T")
SERVICE_THREADS = {"wal-checkpoint", "policy-reload", "leader"}
"""What `Container.start` runs: checkpoints, hot reload, the leader election for the jobs."""


class StartedThreads:
    """Names of the threads started while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        original = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            self.names.append(thread.name)
            original(thread)

        monkeypatch.setattr(threading.Thread, "start", start)


def left_running(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads started since `before` that are still running a moment later."""
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)
    return {thread for thread in set(threading.enumerate()) - before if thread.is_alive()}


@pytest.fixture
def database(sqlite_engine: Engine) -> str:
    return engine_url(sqlite_engine)


@pytest.fixture
def cli_env(tmp_path: Path, mlflow_store: tuple[str, Path]) -> dict[str, str]:
    return {
        "CAMPOPT_DATA_DIR": str(tmp_path / "data"),
        "CAMPOPT_MLFLOW_TRACKING_URI": mlflow_store[0],
    }


def _usage_file(folder: Path) -> Path:
    path = folder / "usage.csv"
    path.write_text(
        "customer_id,recency_days,sessions_30d,minutes_30d\nthread-1,40,0,0\nthread-2,1,30,900\n",
        encoding="utf-8",
    )
    return path


ONE_SHOT = [
    "catalog load {catalog} --database-url {db}",
    "keys create crm --scope decide --database-url {db}",
    "keys list --database-url {db}",
    "logs export {tmp}/logs --database-url {db}",
    "policy rollback churn_prevention --database-url {db}",
    "evaluate --out {tmp}/evaluation --database-url {db}",
]


@pytest.mark.parametrize("command", ONE_SHOT)
def test_a_one_shot_command_starts_none_of_the_service_threads_and_leaves_none(
    command: str,
    database: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    CliRunner().invoke(app, ["catalog", "load", str(EXAMPLE_CATALOG), "--database-url", database])
    before = set(threading.enumerate())
    started = StartedThreads(monkeypatch)
    args = command.format(catalog=EXAMPLE_CATALOG, db=database, tmp=tmp_path).split()
    result = CliRunner().invoke(app, args, env=cli_env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert not SERVICE_THREADS & set(started.names)  # rich's progress display may run one
    assert left_running(before) == set()


def test_usage_import_decides_with_the_champions_and_leaves_no_thread(
    client: TestClient,
    loaded_engine: Engine,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for customer in ("thread-1", "thread-2"):
        add_customer(client, customer, health_class="A")
    before = set(threading.enumerate())
    started = StartedThreads(monkeypatch)
    result = CliRunner().invoke(
        app,
        [
            "usage",
            "import",
            str(_usage_file(tmp_path)),
            "--database-url",
            engine_url(loaded_engine),
        ],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    assert "2 customers updated" in result.output
    assert "1 worsened and emitted a trigger" in result.output
    assert set(started.names) <= {"decision-planner", "decision-writer"}  # joined on close
    assert left_running(before) == set()


def test_light_commands_import_neither_mlflow_nor_the_web_stack(database: str) -> None:
    script = (
        "import sys\n"
        "from api.cli import app\n"
        f"for args in ({['catalog', 'validate', str(EXAMPLE_CATALOG)]!r},"
        f" {['keys', 'list', '--database-url', database]!r},"
        f" {['frame', 'resume', 'churn_prevention', '--reason', 'ok']!r}"
        f" + ['--database-url', {database!r}]):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('mlflow', 'fastapi', 'uvicorn') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_the_command_line_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "catalog", "validate", str(EXAMPLE_CATALOG)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


@pytest.fixture
def container(client: TestClient) -> Container:
    built: Container = client.app.state.services  # type: ignore[attr-defined]
    return built


def test_each_dependency_is_the_containers_typed_part(container: Container) -> None:
    def part(dependency: Callable[[Container], Awaitable[T]]) -> T:
        return asyncio.run(dependency(container))  # type: ignore[arg-type]

    assert isinstance(part(deps.get_settings), Settings)
    assert isinstance(part(deps.get_catalog), CatalogCache)
    assert isinstance(part(deps.get_decisions), DecisionService)
    assert isinstance(part(deps.get_keys), KeyVerifier)
    assert isinstance(part(deps.get_readiness), ReadinessProbe)
    assert isinstance(deps.get_lifecycle(container), PolicyLifecycle)
    assert deps.get_lifecycle(container) is deps.get_lifecycle(container)
    assert part(deps.get_audit) is container.audit
    assert part(deps.get_decisions) is container.decisions


def test_the_decision_routes_dependencies_run_on_the_event_loop() -> None:
    """A sync dependency would cost every decision a hop through the thread pool."""
    assert inspect.iscoroutinefunction(deps.get_container)
    assert inspect.iscoroutinefunction(require("decide"))


def test_readiness_answers_from_the_probe_it_is_handed(client: TestClient) -> None:
    class Starting:
        def check(self) -> ReadinessReport:
            return ReadinessReport(
                status="starting",
                database=True,
                catalog=True,
                policies={"churn_prevention": "0"},
                policy_reload_ok=True,
                registry="disabled",
            )

    client.app.dependency_overrides[deps.get_readiness] = Starting  # type: ignore[attr-defined]
    try:
        response = client.get("/readyz")
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert response.json()["status"] == "starting"
    assert response.json()["policies"] == {"churn_prevention": "0"}


@pytest.fixture
def unregistered(database: str, tmp_path: Path) -> Iterator[Container]:
    settings = Settings(data_dir=tmp_path, database_url=database, mlflow_tracking_uri="disabled")
    container = build_container(settings, background_checkpoints=False)
    yield container
    container.close()


def test_without_a_registry_the_lifecycle_dependency_is_a_conflict(
    unregistered: Container,
) -> None:
    assert unregistered.lifecycle() is None
    with pytest.raises(ConflictError):
        deps.get_lifecycle(unregistered)


def test_building_the_container_starts_no_thread(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = StartedThreads(monkeypatch)
    settings = Settings(data_dir=tmp_path, database_url=database, mlflow_tracking_uri="disabled")
    build_container(settings).close()
    assert started.names == []


def test_a_stopped_app_lets_its_container_go(settings: Settings, admin_key: str) -> None:
    """The app freezes its start-up heap for the collector; once it stops, its container (the
    catalog, every frame's models) must be collectable, or each app built in one process keeps
    its models for good."""
    from api.app import create_app

    app = create_app(settings)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_key}"
        assert test_client.get("/readyz").status_code in (200, 503)
        built = weakref.ref(app.state.services)
    gc.collect()
    assert built() is None
    assert gc.get_freeze_count() == 0
