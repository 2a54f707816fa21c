"""V2 gRPC (``inference.GRPCInferenceService``: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
ModelInfer) on grpcio's generic handlers, which need no generated stubs (``grpc.method_handlers_generic_handler``
with the run-time message classes of grpc_proto.py). A thin translation to the data plane, like rest.py.

grpcio is the one package ``--grpc`` adds to the model's venv (init's plan says so); it is imported only when the
server is started with ``--grpc``. Errors are the REST statuses' gRPC codes (KServe's ``grpc/servicer.py`` maps
its errors the same way: invalid input INVALID_ARGUMENT, unknown model NOT_FOUND, the model's failure INTERNAL),
with the same one-line message."""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any

from mlflow_kserve_server.dataplane import EXTENSIONS, SERVER_NAME, DataPlane
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.grpc_codec import decode_request, encode_metadata, encode_response
from mlflow_kserve_server.grpc_proto import SERVICE, messages
from mlflow_kserve_server.rest import Observer

log = logging.getLogger("mlflow_kserve_server")
# HTTP status of a V2Error -> gRPC status code name
CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT", 500: "INTERNAL"}
METHODS = {  # method -> (request message, response message)
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
}


class Servicer:
    def __init__(self, plane: DataPlane, observe: Observer | None = None) -> None:
        self.plane = plane
        self.observe = observe
        self.m = messages()

    def ServerLive(self, request: Any, context: Any) -> Any:  # the service's method names
        return self.m.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return self.m.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: Any) -> Any:
        self._call(context, self.plane.check_model, request.name, request.version)
        return self.m.ModelReadyResponse(ready=True)

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        metadata = self.plane.server_metadata()
        return self.m.ServerMetadataResponse(name=SERVER_NAME, version=metadata["version"], extensions=EXTENSIONS)

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        self._call(context, self.plane.check_model, request.name, request.version)
        return encode_metadata(self.plane.model_metadata())

    def ModelInfer(self, request: Any, context: Any) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            answer, status = self._call(context, self._infer, request), 200
            return answer
        except _Aborted as aborted:
            status = aborted.status
            context.abort(aborted.code, aborted.message)
        finally:
            if self.observe is not None:
                self.observe("grpc", status, time.perf_counter() - started)

    def _infer(self, message: Any) -> Any:
        self.plane.check_model(message.model_name, message.model_version)
        request, raw = decode_request(message)
        return encode_response(self.plane.infer(request), raw)

    def _call(self, context: Any, function: Any, *args: Any) -> Any:
        import grpc

        try:
            return function(*args)
        except V2Error as exc:
            error = exc
        except Exception as exc:  # a bug: logged with its traceback, answered in one line
            log.exception("gRPC call failed")
            error = V2Error(f"the server failed: {type(exc).__name__}: {exc}", 500)
        if error.status >= 500:
            log.error("gRPC: %s", error.message)
        code = getattr(grpc.StatusCode, CODES.get(error.status, "INTERNAL"))
        raise _Aborted(code, error.message, error.status)


class _Aborted(Exception):
    def __init__(self, code: Any, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _unary(servicer: Servicer, method: str) -> Any:
    """A method whose _Aborted becomes the call's status (ModelInfer aborts itself, after counting the request)."""
    function = getattr(servicer, method)
    if method == "ModelInfer":
        return function

    def call(request: Any, context: Any) -> Any:
        try:
            return function(request, context)
        except _Aborted as aborted:
            context.abort(aborted.code, aborted.message)

    return call


def start(plane: DataPlane, host: str, port: int, max_request_bytes: int, observe: Observer | None = None) -> Any:
    """Serve gRPC on ``host:port`` in this process's threads; the started ``grpc.Server``. Several worker
    processes share the port (SO_REUSEPORT, grpcio's default on Linux). OSError when the port cannot be bound."""
    import grpc

    servicer = Servicer(plane, observe)
    m = servicer.m
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            _unary(servicer, method),
            request_deserializer=getattr(m, request_type).FromString,
            response_serializer=getattr(m, response_type).SerializeToString,
        )
        for method, (request_type, response_type) in METHODS.items()
    }
    options = [
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(thread_name_prefix="grpc"), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio >= 1.52 raises where older ones returned 0
        raise OSError(f"cannot serve gRPC on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot serve gRPC on {address}: the port is taken or the address is not this host's")
    server.start()
    return server
