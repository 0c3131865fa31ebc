"""Real processes on loopback: `campopt serve` and `campopt worker`, as an operator starts them.

Each process runs in a session of its own, so a SIGKILL reaches the uvicorn supervisor and its
workers at once, the way a machine that dies takes all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import col, select

from api.auth import create_key
from campaign_db import migrate
from campaign_db.catalog import load_catalog
from campaign_db.customers import add_customers
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import DecisionLog, Reward
from optimizer.core.catalog import CatalogSpec

ROOT = Path(__file__).resolve().parents[2]

FAST_JOBS = {
    "CAMPOPT_FINALIZE_SECONDS": "1",
    "CAMPOPT_LEARN_SECONDS": "1",
    "CAMPOPT_CHECKPOINT_SECONDS": "2",
    "CAMPOPT_LEADER_POLL_SECONDS": "1",
    "CAMPOPT_POLICY_RELOAD_SECONDS": "1",
    "CAMPOPT_CATALOG_CHECK_SECONDS": "1",
    "CAMPOPT_LOG_LEVEL": "WARNING",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_database(
    url: str,
    catalog: CatalogSpec,
    customers: Iterable[str],
    *,
    channels: list[str],
    since: datetime,
    health_classes: str = "CD",
    language: str = "en",
) -> str:
    """Migrate, load the catalog, add consenting customers; return an admin API key."""
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    ids = list(customers)
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=catalog, source="test", actor="test")
        add_customers(
            session,
            customers=[
                {
                    "id": c,
                    "health_class": health_classes[i % len(health_classes)],
                    "usage_index": 0.2,
                    "time_zone": "Europe/Berlin",
                    "language": language,
                }
                for i, c in enumerate(ids)
            ],
            consents=[(c, ch) for c in ids for ch in channels],
            now=since,
        )
    key = create_key(engine, name="system-test", scopes=["admin"], actor="test")[1]
    engine.dispose()
    return key


def prepare_registry(tracking_uri: str, artifacts: Path) -> None:
    """Create the MLflow store once, before several processes open it at the same time."""
    from optimizer.registry import PolicyRegistry

    PolicyRegistry(tracking_uri, artifact_root=artifacts).experiment_id()


class Process:
    """One `campopt` command (or another `program`) in a process group of its own, logging to
    a file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        folder: Path,
        *,
        program: list[str] | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.program = program or [sys.executable, "-m", "api.cli"]
        self.env = {**os.environ, **env}
        self.log_path = folder / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [*self.program, *self.args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown handler runs, nothing is flushed."""
        self._signal_group(signal.SIGKILL)
        self._wait(10)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        if not self._wait(30):
            self.kill()

    def _signal_group(self, signum: int) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def _wait(self, timeout: float) -> bool:
        assert self.popen is not None
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def server(
    folder: Path, env: dict[str, str], *, port: int, workers: int, scheduler: bool, name: str
) -> Process:
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    if not scheduler:
        args.append("--no-scheduler")
    return Process(name, args, env, folder)


def tracking_server(folder: Path, *, port: int) -> Process:
    """An MLflow tracking server with its own backend store, serving the artifacts itself, as
    a deployment runs it (`compose.yaml`); clients reach both through its address."""
    args = [
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'tracking-server.db'}",
        "--artifacts-destination",
        str(folder / "tracking-server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return Process("mlflow", args, {}, folder, program=[sys.executable, "-m", "mlflow"])


def wait_ready(
    port: int, process: Process, *, timeout: float = 120.0, path: str = "/readyz"
) -> None:
    """Until `path` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.popen is not None
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{process.name} not ready after {timeout} s:\n{process.log_tail()}")


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.5):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def newest_learnable_sequence(engine: Engine) -> int:
    """The newest final reward of a policy decision (holdout decisions are not learned)."""
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.coalesce(func.max(Reward.sequence), 0))
                .join(DecisionLog, col(DecisionLog.id) == col(Reward.decision_id))
                .where(
                    Reward.status == "final",
                    col(DecisionLog.reason).in_(("policy", "policy_no_contact")),
                )
            ).one()
        )
