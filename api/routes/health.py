"""Liveness, readiness and metrics: open to probes and scrapers, no key needed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.deps import ServicesDep
from api.observability import metrics_payload
from campaign_db.learning import SqlLearningStore
from optimizer.publishing import serving_states

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "starting", "unavailable"]
    database: bool
    catalog: bool
    policies: dict[str, str]
    policy_reload_ok: bool
    registry: Literal["reachable", "unreachable", "disabled"]
    tampered_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Policies whose MLflow `champion` alias was moved outside the service "
        "(the alias's version); serving ignores such moves.",
    )


@router.get("/healthz", response_model=Alive)
async def healthz() -> Alive:
    """The process is alive (no dependencies checked)."""
    return Alive(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to decide? The database must answer and the first look for champions must be
    over; an unreachable MLflow or a failed policy reload only degrades the service, which keeps
    serving the policies it has loaded."""
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = True
    except Exception:
        database = False
    try:
        services.catalog.current()
        catalog = True
    except Exception:
        catalog = False
    registry: Literal["reachable", "unreachable", "disabled"] = "disabled"
    tampered: dict[str, str] = {}
    if services.source is not None:
        registry = "reachable" if services.registry_reachable() else "unreachable"
        if database:
            tampered = {
                name: state.tampered_alias
                for name, state in serving_states(SqlLearningStore(services.engine)).items()
                if state.tampered_alias is not None
            }
    ok = services.policies.last_refresh_ok
    status: Literal["ready", "degraded", "starting", "unavailable"] = "ready"
    if not (database and catalog):
        status = "unavailable"
    elif not services.reloader.first_pass.is_set():
        status = "starting"
    elif registry == "unreachable" or not ok:
        status = "degraded"
    body = Readiness(
        status=status,
        database=database,
        catalog=catalog,
        policies=services.policies.loaded(),
        policy_reload_ok=ok,
        registry=registry,
        tampered_aliases=tampered,
    )
    ready = status in ("ready", "degraded")
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition format."""
    payload, content_type = metrics_payload()
    return Response(content=payload, media_type=content_type)
