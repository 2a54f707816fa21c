"""The Open Inference Protocol (V2) REST routes, added to MLflow's own scoring-server app beside its
``/invocations``, ``/ping``, ``/health`` and ``/version``: a thin translation from HTTP to the data plane and
back (paths as KServe's ``protocol/rest/v2_endpoints.py`` registers them; bodies by rest_codec.py).

Every failure is ``{"error": "<one line>"}`` with its status (400 the request's fault, 404 an unknown model or
route, 405 a wrong method, 413 too big, 415 an unknown Content-Encoding, 500 the model's fault), the form
tritonclient and the KServe SDK read; no traceback, server path or request header ever goes into a body (the log
has the traceback). The connection stays usable after every error: a body over the limit is read and dropped, up
to DRAIN_BYTES more, so the client that is still writing it reads the 413 (a server that answers and closes mid-body
leaves it a broken pipe instead: httpx, the KServe SDK's transport, raised that). Only a body past that too is
answered unread, with ``Connection: close``."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlflow_kserve_server import compression, memory
from mlflow_kserve_server.dataplane import DataPlane
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.placement import SMALL, Placement
from mlflow_kserve_server.rest_codec import BINARY, HEADER_LENGTH, JSON, decode_request, encode_json, encode_response

log = logging.getLogger("mlflow_kserve_server")
Observer = Callable[[str, int, float], None]  # (protocol, status, seconds) of each inference, for metrics


class V2Route(Route):
    """A route whose wrong method is answered in the V2 error form too (Starlette's own 405 is plain text)."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(self.methods - {"HEAD"}))
            message = f"{scope['method']} is not allowed on {scope['path']}; use {allowed}"
            response = _json({"error": message}, 405, {"allow": allowed})
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)


DRAIN_BYTES = 64 * 1024 * 1024  # an over-limit body up to the limit plus this is read (and dropped) before the 413


class Unread(V2Error):
    """A body refused before it was read whole: the connection cannot carry another request."""


class RestRoutes:
    def __init__(self, plane: DataPlane, max_request_bytes: int, observe: Observer | None = None) -> None:
        self.plane = plane
        self.max_request_bytes = max_request_bytes
        self.observe = observe
        self.placement = Placement()

    def routes(self) -> list[Route]:
        model, versioned = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
        infer = _observed(self.infer, self.observe)
        return [
            V2Route("/v2/health/live", _safe(self.live), methods=["GET"]),
            V2Route("/v2/health/ready", _safe(self.ready), methods=["GET"]),
            V2Route("/v2", _safe(self.server_metadata), methods=["GET"]),
            V2Route(model, _safe(self.model_metadata), methods=["GET"]),
            V2Route(versioned, _safe(self.model_metadata), methods=["GET"]),
            V2Route(f"{model}/ready", _safe(self.model_ready), methods=["GET"]),
            V2Route(f"{versioned}/ready", _safe(self.model_ready), methods=["GET"]),
            V2Route(f"{model}/infer", infer, methods=["POST"]),
            V2Route(f"{versioned}/infer", infer, methods=["POST"]),
        ]

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        return _json({"ready": True})  # the routes are served only once the model has loaded

    async def server_metadata(self, request: Request) -> Response:
        return _json(self.plane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        self._check_model(request)
        return _json(self.plane.model_metadata())

    async def model_ready(self, request: Request) -> Response:
        self._check_model(request)
        return _json({"name": self.plane.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        self._check_model(request)
        body = await self._body(request)
        headers = request.headers
        respond_with = compression.accepted(headers.get("accept-encoding"))
        args = (body, headers.get("content-encoding"), headers.get(HEADER_LENGTH), respond_with)
        if self.placement.inline(len(body)):
            content, json_length, encoding = self._infer(*args)
        else:
            loop = asyncio.get_running_loop()
            try:
                content, json_length, encoding = await loop.run_in_executor(self.placement.executor, self._infer, *args)
            finally:
                if len(body) > SMALL:  # after its objects are freed: the next task of the inference thread
                    loop.run_in_executor(self.placement.executor, memory.release)
        extra = {}
        if json_length is not None:
            extra[HEADER_LENGTH] = str(json_length)
        if encoding:
            extra["content-encoding"] = encoding
        return Response(content, media_type=JSON if json_length is None else BINARY, headers=extra)

    def _infer(
        self, body: bytes, content_encoding: str | None, header_length: str | None, respond_with: str | None
    ) -> tuple[bytes, int | None, str | None]:
        """Inflate, decode, infer, encode, compress: on the event loop while inferences are quick, else in the
        inference thread, so the loop keeps answering (placement.py)."""
        started = time.perf_counter()
        try:
            inflated = compression.decode_body(body, content_encoding, self.max_request_bytes)
            infer_request = decode_request(inflated, header_length)
            response = self.plane.infer(infer_request)
            content, json_length = encode_response(response, infer_request)
        finally:
            self.placement.took(time.perf_counter() - started, len(body))
        if respond_with:
            content = compression.encode_body(content, respond_with)
        return content, json_length, respond_with

    def _check_model(self, request: Request) -> None:
        self.plane.check_model(request.path_params["name"], request.path_params.get("version"))

    async def _body(self, request: Request) -> bytes:
        limit = self.max_request_bytes
        too_big = compression.too_big(limit).message
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + DRAIN_BYTES:
            raise Unread(too_big, 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit + DRAIN_BYTES:
                raise Unread(too_big, 413)
            if size <= limit:
                chunks.append(chunk)
        if size > limit:  # read whole and dropped: the connection carries the next request
            raise V2Error(too_big, 413)
        return b"".join(chunks)


Handler = Callable[[Request], Awaitable[Response]]


def _safe(handler: Handler) -> Handler:
    """Every failure as a V2 error body: ``{"error": "..."}`` with its status; an unexpected one is a 500."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except V2Error as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.url.path, exc.message)
            headers = {"connection": "close"} if isinstance(exc, Unread) else None
            return _json({"error": exc.message}, exc.status, headers)
        except Exception as exc:
            log.error("%s %s failed:\n%s", request.method, request.url.path, traceback.format_exc().rstrip())
            return _json({"error": V2Error(f"the server failed: {type(exc).__name__}: {exc}").message}, 500)

    return route


def _observed(handler: Handler, observe: Observer | None) -> Handler:
    safe = _safe(handler)
    if observe is None:
        return safe

    async def route(request: Request) -> Response:
        started = time.perf_counter()
        response = await safe(request)
        observe("rest", response.status_code, time.perf_counter() - started)
        return response

    return route


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(payload), status_code=status, media_type=JSON, headers=headers)
