"""The interactive API docs: they work without internet, and "Authorize" sends the API key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings

OPEN = {"/healthz", "/readyz"}


@pytest.fixture
def docs_client(tmp_path: Path) -> TestClient:
    """No lifespan: the docs pages and the schema need no database."""
    return TestClient(create_app(Settings(data_dir=tmp_path, mlflow_tracking_uri="disabled")))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_the_server_serves(docs_client: TestClient, page: str) -> None:
    html = docs_client.get(page)
    assert html.status_code == 200
    assert "http://" not in html.text, html.text
    assert "https://" not in html.text, html.text
    assets = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html.text)
    assets += re.findall(r"url: '([^']+)'", html.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert re.match(r"/[^/]", asset), asset
        response = docs_client.get(asset)
        assert response.status_code == 200, asset
        assert response.content, asset


def test_every_route_that_needs_a_key_declares_the_api_key_schemes(
    docs_client: TestClient,
) -> None:
    schema = docs_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["apiKeyBearer"].items()
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes[
        "apiKeyHeader"
    ].items()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            expected = [] if path in OPEN else [{"apiKeyBearer": []}, {"apiKeyHeader": []}]
            assert operation.get("security", []) == expected, (method, path)


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_either_declared_header_carries_the_key(
    client: TestClient, admin_key: str, header: str
) -> None:
    value = f"Bearer {admin_key}" if header == "Authorization" else admin_key
    del client.headers["Authorization"]
    assert client.get("/v1/frames", headers={header: value}).status_code == 200
    assert client.get("/v1/frames", headers={header: "co_wrong"}).status_code == 401
    assert client.get("/v1/frames").status_code == 401
