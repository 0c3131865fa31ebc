"""Dependencies the routes declare: each hands a route the one typed object it needs.

They are `async def` although they do no I/O: FastAPI runs a plain `def` dependency in its
thread pool, and on the decision route those hops cost more than everything else FastAPI does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import KeyVerifier
from api.container import Container
from api.readiness import ReadinessProbe
from api.settings import Settings
from optimizer.decisions import DecisionService
from optimizer.errors import ConflictError
from optimizer.lifecycle import PolicyLifecycle
from optimizer.ports.audit import AuditLog
from optimizer.serving import CatalogCache


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.services
    return container


ContainerDep = Annotated[Container, Depends(get_container)]
ServicesDep = ContainerDep
"""The whole container, for routes that still reach for several of its parts."""


async def get_settings(container: ContainerDep) -> Settings:
    return container.settings


async def get_catalog(container: ContainerDep) -> CatalogCache:
    return container.catalog


async def get_decisions(container: ContainerDep) -> DecisionService:
    return container.decisions


async def get_keys(container: ContainerDep) -> KeyVerifier:
    return container.keys


async def get_audit(container: ContainerDep) -> AuditLog:
    return container.audit


async def get_readiness(container: ContainerDep) -> ReadinessProbe:
    return container.readiness


def get_lifecycle(container: ContainerDep) -> PolicyLifecycle:
    """Training, gating and promotion; 409 when this server runs without a registry."""
    lifecycle = container.lifecycle()
    if lifecycle is None:
        raise ConflictError("registry", "the model registry is disabled on this server")
    return lifecycle


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[CatalogCache, Depends(get_catalog)]
DecisionsDep = Annotated[DecisionService, Depends(get_decisions)]
KeysDep = Annotated[KeyVerifier, Depends(get_keys)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
ReadinessDep = Annotated[ReadinessProbe, Depends(get_readiness)]
LifecycleDep = Annotated[PolicyLifecycle, Depends(get_lifecycle)]
