"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), catalogs, RNGs.

PostgreSQL is found through `CAMPAIGN_TEST_POSTGRES_URL` or the local server on 127.0.0.1:5432.
Each test session works in a database of its own, created and dropped here. With
`CAMPOPT_REQUIRE_POSTGRES=1` (set by CI) an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import SQLModel

from campaign_db import migrate
from campaign_db.catalog import read_catalog
from campaign_db.engine import create_engine_from_url
from optimizer.core.catalog import CatalogSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CATALOG = ROOT / "examples" / "catalog"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> str | None:
    url = os.environ.get("CAMPAIGN_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    try:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception:
        if os.environ.get("CAMPOPT_REQUIRE_POSTGRES") == "1":
            raise
        return None
    return url


POSTGRES_ADMIN_URL = _postgres_admin_url()
BACKENDS = ["sqlite", "postgresql"]


class PostgresDatabases:
    """Creates throw-away databases on the test server and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"campopt_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    if POSTGRES_ADMIN_URL is None:
        pytest.skip("PostgreSQL is not reachable")
    databases = PostgresDatabases(POSTGRES_ADMIN_URL)
    yield databases
    databases.drop_all()


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An empty database (no tables) of the backend named by the test's `backend` param."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    if backend == "sqlite":
        yield backend, f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        databases = request.getfixturevalue("postgres_databases")
        yield backend, databases.create()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine_from_url(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_migrated_url(postgres_databases: PostgresDatabases) -> str:
    url = postgres_databases.create()
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _truncate_postgres(engine: Engine) -> None:
    names = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@contextmanager
def _empty_database(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[Engine]:
    if backend == "sqlite":
        path = tmp_path / "campopt.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        engine = create_engine_from_url(f"sqlite:///{path}")
    else:
        engine = create_engine_from_url(request.getfixturevalue("postgres_migrated_url"))
        _truncate_postgres(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database on each backend."""
    with _empty_database(request, request.param, tmp_path) as engine:
        yield engine


@pytest.fixture(params=["memory", *BACKENDS])
def store_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine | None]:
    """For store contract tests: None where the in-memory stores are under test, else a
    migrated, empty database on each backend."""
    if request.param == "memory":
        yield None
        return
    with _empty_database(request, request.param, tmp_path) as engine:
        yield engine


SERVICE_THREADS = frozenset(
    {
        "decision-planner",
        "decision-writer",
        "ranking-writer",
        "policy-reload",
        "leader",
        "wal-checkpoint",
    }
)
"""Threads of the service that its `close` stops; one left running holds its policies and
models (and its database connections) until the process ends."""


@pytest.fixture(autouse=True)
def no_service_thread_outlives_its_test() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [
        t.name
        for t in set(threading.enumerate()) - before
        if t.is_alive() and t.name in SERVICE_THREADS
    ]
    assert not left, f"threads left running (close what started them): {sorted(left)}"


@pytest.fixture
def sqlite_engine(tmp_path: Path, sqlite_template: Path) -> Iterator[Engine]:
    path = tmp_path / "campopt.db"
    shutil.copy(sqlite_template, path)
    engine = create_engine_from_url(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def example_catalog() -> CatalogSpec:
    return read_catalog(EXAMPLE_CATALOG)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def engine_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def loaded_engine(engine: Engine, example_catalog: CatalogSpec) -> Engine:
    """A migrated database on each backend with the example catalog loaded (frames active)."""
    from campaign_db.catalog import load_catalog
    from campaign_db.engine import session_scope

    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=example_catalog, source="example", actor="test")
    return engine


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One MLflow tracking store for the session (creating one takes seconds).

    Tests that register policies use frame keys of their own, or a store of their own.
    """
    from optimizer.registry import PolicyRegistry

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    PolicyRegistry(uri, artifact_root=folder / "artifacts").experiment_id()
    return uri, folder / "artifacts"


@pytest.fixture
def settings(loaded_engine: Engine, tmp_path: Path, mlflow_store: tuple[str, Path]):  # type: ignore[no-untyped-def]
    from api.settings import Settings

    return Settings(
        data_dir=tmp_path / "data",
        database_url=engine_url(loaded_engine),
        mlflow_tracking_uri=mlflow_store[0],
        catalog_check_seconds=0.0,
        scheduler_enabled=False,
    )


@pytest.fixture
def admin_key(loaded_engine: Engine) -> str:
    from api.auth import create_key

    return create_key(loaded_engine, name="tests", scopes=["admin"], actor="tests")[1]


@pytest.fixture
def client(settings, admin_key: str):  # type: ignore[no-untyped-def]
    """An API client that sends an admin key unless a test overrides the header."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_key}"
        yield test_client


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, example_catalog: CatalogSpec):  # type: ignore[no-untyped-def]
    """A small simulated run (800 customers, 14 days) whose logs evaluation tests read."""
    from api.demo import run_demo
    from optimizer.simulator.run import SimulationConfig

    out = tmp_path_factory.mktemp("demo")
    return run_demo(
        catalog=example_catalog,
        out=out,
        config=SimulationConfig(customers=800, days=14, seed=5),
        register=False,
    )
