"""Readiness: can this process decide, and how well? The checks behind `/readyz`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from campaign_db.engine import Engine, answers
from optimizer.ports.learning import ServingRecords
from optimizer.publishing import serving_states
from optimizer.serving import CatalogCache, PolicyPool

if TYPE_CHECKING:
    from optimizer.registry import PolicyRegistry

Status = Literal["ready", "degraded", "starting", "unavailable"]
RegistryState = Literal["reachable", "unreachable", "disabled"]


@dataclass(frozen=True)
class ReadinessReport:
    status: Status
    database: bool
    catalog: bool
    policies: dict[str, str]
    policy_reload_ok: bool
    registry: RegistryState
    tampered_aliases: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status in ("ready", "degraded")


class ReadinessProbe:
    """The database must answer and the first look for champions must be over; an unreachable
    MLflow or a failed policy reload only degrades the service, which keeps serving the policies
    it has loaded."""

    def __init__(
        self,
        *,
        engine: Engine,
        catalog: CatalogCache,
        policies: PolicyPool,
        first_reload: threading.Event,
        registry: PolicyRegistry | None,
        learning: ServingRecords,
        ping_every_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._learning = learning
        self._catalog = catalog
        self._policies = policies
        self._first_reload = first_reload
        self._registry = registry
        self._ping_every = ping_every_seconds
        self._last_ping: tuple[float, bool] | None = None

    def registry_reachable(self) -> bool:
        """Ask MLflow at most every `ping_every_seconds`."""
        if self._registry is None:
            return True
        now = time.monotonic()
        if self._last_ping is not None and now - self._last_ping[0] < self._ping_every:
            return self._last_ping[1]
        reachable = self._registry.ping()
        self._last_ping = (now, reachable)
        return reachable

    def check(self) -> ReadinessReport:
        database = answers(self._engine)
        try:
            self._catalog.current()
            catalog = True
        except Exception:
            catalog = False
        registry: RegistryState = "disabled"
        tampered: dict[str, str] = {}
        if self._registry is not None:
            registry = "reachable" if self.registry_reachable() else "unreachable"
            if database:
                tampered = {
                    name: state.tampered_alias
                    for name, state in serving_states(self._learning).items()
                    if state.tampered_alias is not None
                }
        ok = self._policies.last_refresh_ok
        status: Status = "ready"
        if not (database and catalog):
            status = "unavailable"
        elif not self._first_reload.is_set():
            status = "starting"
        elif registry == "unreachable" or not ok:
            status = "degraded"
        return ReadinessReport(
            status=status,
            database=database,
            catalog=catalog,
            policies=self._policies.loaded(),
            policy_reload_ok=ok,
            registry=registry,
            tampered_aliases=tampered,
        )
