"""Prometheus metrics and structured (JSON) logs.

With several server processes, set `PROMETHEUS_MULTIPROC_DIR` (`campopt serve` does so) and the
/metrics endpoint of any process reports the sum over all of them.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DECISIONS = Counter("campopt_decisions_total", "Decisions made", ["frame", "reason"])
LATENCY = Histogram(
    "campopt_request_seconds",
    "HTTP request latency",
    ["route", "method", "status"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FEEDBACK_LAG = Histogram(
    "campopt_feedback_lag_seconds",
    "Time from an event or conversion happening to the service hearing of it",
    ["kind"],
    buckets=(1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400),
)
POLICY_VERSION = Gauge(
    "campopt_policy_version_info",
    "The policy version a process serves (value 1)",
    ["policy", "version"],
    multiprocess_mode="max",
)
POLICY_DRIFTING = Gauge(
    "campopt_policy_drifting",
    "1 while a serving policy's drift test says what customers do changed and its model has "
    "not caught up (it explores up to its frame's max_epsilon meanwhile), else 0",
    ["policy"],
    multiprocess_mode="max",
)
GUARDRAIL = Gauge(
    "campopt_guardrail_value",
    "Live guardrail metrics per frame (from the last monitor run)",
    ["frame", "metric"],
    multiprocess_mode="max",
)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on a port of its own (processes without HTTP API: `campopt worker`)."""
    start_http_server(port, addr=host, registry=_registry())


_served: dict[str, str] = {}


def set_policy_versions(loaded: dict[str, str]) -> None:
    """1 for the version each policy serves, 0 for the one it served before."""
    for name, version in loaded.items():
        previous = _served.get(name)
        if previous is not None and previous != version:
            POLICY_VERSION.labels(policy=name, version=previous).set(0)
        POLICY_VERSION.labels(policy=name, version=version).set(1)
        _served[name] = version


def set_policy_drift(drifting: dict[str, bool]) -> None:
    for name, flag in drifting.items():
        POLICY_DRIFTING.labels(policy=name).set(1 if flag else 0)


class RequestMetrics:
    """Latency per route template (not per raw path, which would explode the label set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            LATENCY.labels(route=path, method=scope.get("method", ""), status=str(status)).observe(
                time.perf_counter() - started
            )


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr: time, level, logger, message and any `extra` fields."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # one line per job run and job added is noise; its warnings and errors still come through
    logging.getLogger("apscheduler").setLevel(
        max(logging.WARNING, logging.getLevelName(level.upper()))
    )
