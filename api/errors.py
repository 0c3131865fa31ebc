"""Every error leaves the API as JSON naming the field and the problem, mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaign_db.engine import DATABASE_ERRORS, database_unavailable
from optimizer.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)

log = logging.getLogger("campopt.api")


class Problem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """The shape of every error response."""

    error: str
    problems: list[Problem]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "the body is not UTF-8 JSON"),
        (401, "no or unknown API key"),
        (403, "the key lacks the scope"),
        (404, "not found"),
        (409, "conflict with stored state"),
        (413, "request body too large"),
        (422, "invalid request"),
        (503, "a service it needs is unavailable"),
    )
}


def error_response(status: int, error: str, problems: Sequence[tuple[str, str]]) -> JSONResponse:
    body = ErrorBody(error=error, problems=[Problem(field=f, message=m) for f, m in problems])
    return JSONResponse(status_code=status, content=body.model_dump())


def field_path(loc: Sequence[str | int]) -> str:
    """('body', 'channels', 0) → 'channels[0]'; ('query', 'limit') → 'limit'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie") and len(parts) > 1:
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _validation_message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "json_invalid":
        return f"invalid JSON: {error.get('ctx', {}).get('error', 'cannot parse')}"
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (RFC 9110 `Allow`); the router's own 405 names
    only the methods of the first route whose path matched."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            (
                "body" if e.get("type") == "json_invalid" else field_path(e["loc"]),
                _validation_message(e),
            )
            for e in exc.errors()
        ]
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        status, error = 422, "invalid_request"
        if isinstance(exc, NotFoundError):
            status, error = 404, "not_found"
        elif isinstance(exc, ConflictError):
            status, error = 409, "conflict"
        elif isinstance(exc, InvalidInputError):
            status, error = 422, "invalid_request"
        elif isinstance(exc, UnavailableError):
            status, error = 503, "unavailable"
        return error_response(status, error, [(exc.field, exc.message)])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 413:
            return error_response(413, "body_too_large", [("body", detail)])
        field = {400: "body", 404: "path", 405: "path"}.get(exc.status_code, "request")
        names = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
        }
        name = names.get(exc.status_code, f"http_{exc.status_code}")
        response = error_response(exc.status_code, name, [(field, detail)])
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            log.warning("database unavailable: %s", exc)
            problem = ("database", "the database is unavailable; retry later")
        elif isinstance(exc, TimeoutError):
            log.warning("request timed out", exc_info=exc)
            problem = ("request", "the service is overloaded; retry later")
        else:
            return await _unexpected(_request, exc)
        response = error_response(503, "unavailable", [problem])
        response.headers["Retry-After"] = "5"
        return response

    # registered per class, so they are answered before the catch-all below
    for kind in (*DATABASE_ERRORS, TimeoutError):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", [("request", "unexpected server error")])


class BodySizeLimit:
    """Refuse bodies above `max_bytes` with 413 before anything parses them (pure ASGI)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._refuse(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"body larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", [("body", f"larger than {self.max_bytes} bytes")]
        )
        await response(scope, receive, send)
