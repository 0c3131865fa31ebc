"""The cockpit in a real headless Chromium against a uvicorn server on a real database: sign
in, read the overview, find that a read-only key cannot approve, approve a waiting frame
version as a manager and find the approval in the audit log. Each page is photographed into
docs/screenshots/ (the pictures docs/cockpit.md shows)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine

from api.app import create_app
from api.auth import create_key
from tests.api.cockpit_data import FRAME, add_draft, seed_decisions

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

if not CHROMIUM.exists() and os.environ.get("CAMPOPT_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"{CHROMIUM} is missing and CAMPOPT_REQUIRE_BROWSER=1 (as in CI)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium; CI has it)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Any) -> Iterator[str]:
    """The app with its lifespan under uvicorn in a thread, stopped (lifespan and all) after."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, lifespan="on", log_level="warning"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="cockpit-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within a minute"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


def _shoot(page: Any, name: str, keep: bool) -> None:
    if keep:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/overview")
    assert "/ui/login" in page.url
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]:has-text('Sign in')")
    assert page.url.endswith("/ui/overview")


def test_a_manager_signs_in_reads_the_overview_and_approves_a_waiting_frame_version(
    loaded_engine: Engine, server: str, browser: Any
) -> None:
    keep = loaded_engine.dialect.name == "sqlite"  # one set of pictures, from the default
    answers = seed_decisions(loaded_engine)
    version = add_draft(loaded_engine)
    viewer = create_key(loaded_engine, name="analyst", scopes=["read_logs"], actor="t")[1]
    manager = create_key(
        loaded_engine, name="maria.manager", scopes=["read_logs", "approve"], actor="t"
    )[1]
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    page.goto(f"{server}/ui/overview")
    assert "/ui/login" in page.url
    _shoot(page, "login", keep)
    _sign_in(page, server, viewer)
    section = page.locator(f'section[data-frame="{FRAME}"]')
    assert section.locator('[data-metric="status"]').inner_text() == "active"
    assert int(section.locator('[data-metric="uplift.contacts"]').get_attribute("data-value")) > 0
    _shoot(page, "overview", keep)

    page.goto(f"{server}/ui/approvals")
    draft = page.locator(f'section[data-draft="{FRAME}:{version}"]')
    assert "holdout_share" in draft.inner_text()
    draft.locator("input[name=reason]").fill("trying without the scope")
    draft.locator("button.approve").click()
    assert "lacks the 'approve' scope" in page.inner_text("main")
    _shoot(page, "forbidden", keep)

    page.click("button:has-text('Sign out')")
    _sign_in(page, server, manager)
    page.goto(f"{server}/ui/approvals")
    _shoot(page, "approvals", keep)
    draft = page.locator(f'section[data-draft="{FRAME}:{version}"]')
    draft.locator("input[name=reason]").fill("a larger holdout measures the uplift better")
    draft.locator("button.approve").click()
    assert f"frame {FRAME} v{version} approved" in page.inner_text(".flash")

    page.goto(f"{server}/ui/audit?action=frame.")
    row = page.locator('tr[data-action="frame.approve"]').first
    assert "maria.manager" in row.inner_text()
    assert "a larger holdout measures the uplift better" in row.inner_text()
    assert "via: cockpit" in row.inner_text()
    assert "trying without the scope" not in page.inner_text("main")
    _shoot(page, "audit", keep)

    page.goto(f"{server}/ui/overview")
    active = page.locator(f'section[data-frame="{FRAME}"] [data-metric="active_version"]')
    assert active.inner_text() == str(version)

    contact = next(a for a in answers if a.action is not None)
    page.goto(f"{server}/ui/decisions")
    page.fill("input[name=id]", str(contact.decision_id))
    page.click("button:has-text('Explain')")
    assert "Eligibility trace" in page.inner_text("main")
    assert page.locator("table.candidates").first.locator("tr.chosen").count() == 1
    _shoot(page, "decision", keep)

    page.goto(f"{server}/ui/frames/{FRAME}/history")
    assert "frame.approve" in page.inner_text("main")
    _shoot(page, "history", keep)
    page.close()
