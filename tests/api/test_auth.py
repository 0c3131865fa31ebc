"""API keys: no key is 401, a key without the scope is 403, revocation holds."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from api.auth import create_key
from api.cli import app
from tests.conftest import engine_url


def test_every_endpoint_but_health_needs_a_key(client: TestClient) -> None:
    client.headers.pop("Authorization")
    assert client.get("/healthz").status_code == 200
    for method, path in (
        ("post", "/v1/decisions"),
        ("get", "/v1/decisions/01a20000-0000-7000-8000-000000000000"),
        ("put", "/v1/customers/x"),
        ("post", "/v1/conversions"),
        ("get", "/v1/outbox?channel=email"),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert response.json()["problems"][0]["field"] == "request"


@pytest.mark.parametrize(
    ("scope", "method", "path", "allowed"),
    [
        ("decide", "get", "/v1/outbox?channel=email", True),
        ("decide", "post", "/v1/conversions", False),
        ("feedback", "post", "/v1/decisions", False),
        ("simulate", "post", "/v1/decisions", False),
        ("read_logs", "put", "/v1/customers/x", False),
        ("feedback", "get", "/v1/customers/x", False),
    ],
)
def test_a_key_without_the_scope_is_403(
    client: TestClient, loaded_engine: Engine, scope: str, method: str, path: str, allowed: bool
) -> None:
    _, key = create_key(loaded_engine, name=f"only-{scope}", scopes=[scope], actor="tests")
    client.headers["Authorization"] = f"Bearer {key}"
    response = getattr(client, method)(path, **({"json": {}} if method in ("post", "put") else {}))
    if allowed:
        assert response.status_code not in (401, 403)
    else:
        assert response.status_code == 403
        assert "lacks the" in response.json()["problems"][0]["message"]


def test_revoked_and_unknown_keys_are_refused_and_keys_are_stored_hashed(
    client: TestClient, loaded_engine: Engine
) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "crm",
            "--scope",
            "read_logs",
            "--database-url",
            engine_url(loaded_engine),
        ],
    )
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    listing = runner.invoke(app, ["keys", "list", "--database-url", engine_url(loaded_engine)])
    assert key not in listing.output
    client.headers["X-API-Key"] = key
    client.headers.pop("Authorization")
    assert client.get("/v1/decisions/01a20000-0000-7000-8000-000000000000").status_code == 404
    key_id = next(
        line.split()[1] for line in created.output.splitlines() if line.startswith("key ")
    )
    revoked = runner.invoke(
        app, ["keys", "revoke", key_id, "--database-url", engine_url(loaded_engine)]
    )
    assert revoked.exit_code == 0, revoked.output
    client.app.state.services.keys.ttl = 0  # type: ignore[attr-defined]
    assert client.get("/v1/decisions/01a20000-0000-7000-8000-000000000000").status_code == 401
    client.headers["X-API-Key"] = "co_made-up"
    assert client.get("/v1/decisions/01a20000-0000-7000-8000-000000000000").status_code == 401


def test_unknown_scope_is_refused_by_the_cli(loaded_engine: Engine) -> None:
    result = CliRunner().invoke(
        app,
        [
            "keys",
            "create",
            "x",
            "--scope",
            "superuser",
            "--database-url",
            engine_url(loaded_engine),
        ],
    )
    assert result.exit_code != 0
    assert "scopes" in result.output
