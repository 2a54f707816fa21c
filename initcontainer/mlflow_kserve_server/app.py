"""The ASGI app: the V2 routes, and MLflow's own scoring server for everything else (``/invocations``, ``/ping``,
``/health``, ``/version``: ``mlflow.pyfunc.scoring_server.init``, a FastAPI app from MLflow 2.21.0 on).

``/v2`` paths go straight to a router of their own rather than through MLflow's app: its ``timeout_middleware``
(``@app.middleware("http")``, Starlette's BaseHTTPMiddleware, wrapping each request in ``asyncio.wait_for``) and
FastAPI's middleware stack cost more per request than the whole V2 translation (benchmarks/speed.py). The V2 routes
answer their own errors (rest.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router

from mlflow_kserve_server.dataplane import DataPlane
from mlflow_kserve_server.rest import Observer, RestRoutes
from mlflow_kserve_server.rest_codec import JSON, encode_json


def build_app(plane: DataPlane, max_request_bytes: int, observe: Observer | None = None) -> Any:
    from mlflow.pyfunc import scoring_server

    mlflow_app = scoring_server.init(plane.served.pyfunc)
    v2 = Router(routes=RestRoutes(plane, max_request_bytes, observe).routes(), default=_not_found)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v2" or path.startswith("/v2/")):
            await v2(scope, receive, send)
        else:
            await mlflow_app(scope, receive, send)

    return app


async def _not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    request = Request(scope, receive)
    body = encode_json({"error": f"no V2 route {request.method} {request.url.path}; see /v2/models/<name>"})
    await Response(body, status_code=404, media_type=JSON)(scope, receive, send)
