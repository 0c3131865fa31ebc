"""A bare FastAPI app that validates a decision request and echoes it: the ceiling of the HTTP
stack on this machine, which `benchmarks.http_load` measures next to the service in the same run.

    uvicorn benchmarks.echo_app:create_app --factory --workers 2 --port 8765
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.responses import JSONResponse

from api.schemas import DecisionRequest


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> Response:
        return JSONResponse({"status": "ready"})

    @app.post("/v1/decisions")
    async def echo(request: DecisionRequest) -> Response:
        body = f'{{"decision_id":"{request.request_id}","customer_id":"{request.customer_id}"}}'
        return Response(content=body, media_type="application/json")

    return app
