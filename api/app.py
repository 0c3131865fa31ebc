"""The FastAPI app factory: everything is built inside the lifespan, nothing at import time."""

from __future__ import annotations

import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles

from api.container import build_container
from api.errors import BodySizeLimit, install_error_handlers
from api.observability import RequestMetrics, configure_logging
from api.routes import customers, decisions, feedback, governance, health, outbound, rankings
from api.settings import Settings
from api.ui import routes as ui

STATIC = Path(__file__).resolve().parent / "static"

DOCS_ASSETS = "/docs-assets"
DEFAULT_GC_THRESHOLDS = gc.get_threshold()


def tune_garbage_collector() -> None:
    """Freeze what start-up allocated and collect less often.

    A decision allocates a few hundred short-lived objects; with default thresholds the cyclic
    collector's full passes over the start-up heap (catalog, schemas, models) stall about one
    request in a hundred by 10 ms or more. Frozen objects are never scanned again, and never
    collected either: `restore_garbage_collector` undoes this when the app stops.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def restore_garbage_collector() -> None:
    """Hand the frozen heap back to the collector, so a stopped app (its catalog, its models)
    is freed: a process that builds apps one after another (tests, an embedding host) would
    otherwise keep every one of them."""
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.log_json:
            configure_logging(settings.log_level)
        container = build_container(settings)
        container.start()
        tune_garbage_collector()
        app.state.services = container
        try:
            yield
        finally:
            container.close()
            # FastAPI's callable caches may outlive the app; the models must not.
            del app.state.services
            restore_garbage_collector()

    # Swagger UI and ReDoc from files the package ships: the CDN pages stay blank offline
    app = FastAPIOffline(
        title="Campaign optimizer",
        version="0.1.0",
        summary="Contextual-bandit decisions inside approved decision frames.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    app.include_router(health.router)
    app.include_router(decisions.router)
    app.include_router(rankings.router)
    app.include_router(customers.router)
    app.include_router(feedback.router)
    app.include_router(outbound.router)
    app.include_router(governance.router)
    _add_cockpit(app, settings)
    return app


def _add_cockpit(app: FastAPI, settings: Settings) -> None:
    """The managers' pages under /ui, their stylesheet, and the signed session cookie they
    sign in with (only sent to /ui, never cross-site)."""
    secret = settings.ui_session_secret.get_secret_value() or secrets.token_urlsafe(32)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="campopt_ui",
        max_age=int(settings.ui_session_hours * 3600),
        path="/ui",
        same_site="strict",
        https_only=settings.ui_https_only,
    )
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(ui.router)
