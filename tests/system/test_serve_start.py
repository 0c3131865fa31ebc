"""`campopt serve` as an operator first starts it: a fresh data folder, the default two workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx

from tests.system.cluster import ROOT, Process, free_port, wait_for, wait_ready


def _started(serve: Process, popen: subprocess.Popen[bytes]) -> bool:
    """Both workers are up, or one gave up, or the server is gone."""
    log = serve.log_path.read_text()
    return (
        log.count("Application startup complete") == 2
        or "startup failed" in log
        or popen.poll() is not None
    )


def test_serve_starts_on_a_fresh_data_folder_and_stops_cleanly(tmp_path: Path) -> None:
    """Both workers used to initialise the new MLflow store at once and one of them crashed."""
    port = free_port()
    env = {
        "CAMPOPT_DATA_DIR": str(tmp_path / "data"),
        "CAMPOPT_LOG_LEVEL": "WARNING",
        "CAMPOPT_POLICY_RELOAD_SECONDS": "1",
    }
    serve = Process("serve", ["serve", "--port", str(port), "--log-level", "info"], env, tmp_path)
    popen = serve.start().popen
    assert popen is not None
    try:
        wait_for(lambda: _started(serve, popen), timeout=90, what="both workers to start")
        assert "startup failed" not in serve.log_path.read_text(), serve.log_tail()
        wait_ready(port, serve, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            readiness = json.loads(response.read())
        assert readiness["status"] == "ready", readiness
        assert readiness["registry"] == "reachable", readiness
        _signed_in_across_workers(port, {**os.environ, **env})
        time.sleep(1.0)
        assert popen.poll() is None, serve.log_tail()
    finally:
        serve.stop()
    log = serve.log_path.read_text()
    assert f"serving on http://127.0.0.1:{port} (2 workers)" in log, log
    assert log.count("Application startup complete") == 2, serve.log_tail()
    assert "Traceback" not in log, serve.log_tail()
    assert popen.returncode == 0, serve.log_tail()


def _signed_in_across_workers(port: int, env: dict[str, str]) -> None:
    """The cockpit's session cookie is signed by one worker and read by the other: `serve`
    gives its workers one secret, so a manager stays signed in whichever answers."""
    created = subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", "create", "manager", "--scope", "read_logs"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    # a new connection per request, so requests reach both workers
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, limits=fresh) as client:
        for _ in range(4):
            form = client.get("/ui/login")
            match = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert match, form.text
            signed = client.post("/ui/login", data={"api_key": key, "csrf": match.group(1)})
            assert signed.status_code == 303, signed.text
            for _ in range(8):
                page = client.get("/ui/overview")
                assert page.status_code == 200, page.text
                assert "Sign out" in page.text
