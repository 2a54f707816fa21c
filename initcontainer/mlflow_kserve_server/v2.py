"""The Open Inference Protocol (V2) REST routes, added to MLflow's own scoring-server app beside its
``/invocations``, ``/ping``, ``/health`` and ``/version``. Paths, status codes and bodies follow MLServer 1.7.1
(SeldonIO/MLServer at 1.7.1: ``mlserver/rest/app.py``, ``mlserver/rest/endpoints.py``, ``mlserver/errors.py``)."""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlflow_kserve_server.decode import decode
from mlflow_kserve_server.encode import EncodeError, encode
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.model import ServedModel
from mlflow_kserve_server.protocol import parse_request

log = logging.getLogger("mlflow_kserve_server")

Observer = Callable[[bool, float], None]  # (succeeded, seconds) of each inference, for metrics


class V2Routes:
    def __init__(self, served: ServedModel, max_request_bytes: int, observe: Observer | None = None) -> None:
        self.served = served
        self.max_request_bytes = max_request_bytes
        self.observe = observe

    def routes(self) -> list[Route]:
        model, versioned = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
        return [
            Route("/v2/health/live", _safe(self.live), methods=["GET"]),
            Route("/v2/health/ready", _safe(self.ready), methods=["GET"]),
            Route("/v2", _safe(self.server_metadata), methods=["GET"]),
            Route(model, _safe(self.model_metadata), methods=["GET"]),
            Route(versioned, _safe(self.model_metadata), methods=["GET"]),
            Route(f"{model}/ready", _safe(self.model_ready), methods=["GET"]),
            Route(f"{versioned}/ready", _safe(self.model_ready), methods=["GET"]),
            Route(f"{model}/infer", _safe(self.infer), methods=["POST"]),
            Route(f"{versioned}/infer", _safe(self.infer), methods=["POST"]),
        ]

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200)  # the routes are served only once the model has loaded

    async def server_metadata(self, request: Request) -> Response:
        return _json({"name": "mlflow", "version": self.served.mlflow_version, "extensions": []})

    async def model_metadata(self, request: Request) -> Response:
        self._check_model(request)
        return _json(self.served.metadata())

    async def model_ready(self, request: Request) -> Response:
        self._check_model(request)
        return Response(status_code=200)

    async def infer(self, request: Request) -> Response:
        self._check_model(request)
        body = await self._body(request)
        started = time.perf_counter()
        try:
            answer = await run_in_threadpool(self._infer, body)
        except Exception:
            if self.observe:
                self.observe(False, time.perf_counter() - started)
            raise
        if self.observe:
            self.observe(True, time.perf_counter() - started)
        return Response(answer, media_type="application/json")

    def _infer(self, body: bytes) -> bytes:
        """Parse, decode, predict, encode: in a worker thread, so the event loop keeps answering probes."""
        served = self.served
        request = parse_request(body)
        model_input = decode(request, served.signature)
        prediction = served.predict(model_input, request.model_params())
        try:
            encoded = encode(prediction)
        except EncodeError as exc:
            fix = "have the model return a DataFrame, an array, a list or a dict of arrays"
            raise V2Error(f"{exc}; {fix}", 500) from None
        answer: dict[str, Any] = {"model_name": served.settings.name}
        if served.settings.version is not None:
            answer["model_version"] = served.settings.version
        answer["id"] = request.id or str(uuid.uuid4())
        answer["parameters"] = {"content_type": encoded.content_type}
        answer["outputs"] = encoded.outputs
        try:
            return _dumps(answer)
        except (TypeError, ValueError) as exc:
            raise V2Error(f"the prediction cannot be written as JSON: {exc}", 500) from None

    def _check_model(self, request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        settings = self.served.settings
        if name != settings.name or (version is not None and version != settings.version):
            if version is None:
                raise V2Error(f"Model {name} not found", 404)
            raise V2Error(f"Model {name} with version {version} not found", 404)

    async def _body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        too_big = V2Error(
            f"the request body is over {limit} bytes; send smaller batches, or raise the server's "
            "--max-request-bytes (MLFLOW_KSERVE_SERVER_MAX_REQUEST_BYTES)",
            413,
        )
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)


def _safe(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Every failure as a V2 error body: ``{"error": "..."}`` with its status; an unexpected one is a 500."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except V2Error as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.url.path, exc.message)
            return _json({"error": exc.message}, exc.status)
        except Exception as exc:
            log.error("%s %s failed:\n%s", request.method, request.url.path, traceback.format_exc().rstrip())
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)

    return route


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_dumps(payload), status_code=status, media_type="application/json")
