"""Liveness, readiness and metrics: open to probes and scrapers, no key needed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import ReadinessDep
from api.observability import metrics_payload

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
def readyz(probe: ReadinessDep) -> JSONResponse:
    """Ready to decide? The database must answer and the first look for champions must be
    over; an unreachable MLflow or a failed policy reload only degrades the service, which keeps
    serving the policies it has loaded."""
    report = probe.check()
    body = Readiness.model_validate(report, from_attributes=True)
    return JSONResponse(body.model_dump(), status_code=200 if report.ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition format."""
    payload, content_type = metrics_payload()
    return Response(content=payload, media_type=content_type)
