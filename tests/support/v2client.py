"""A V2 client process for the conformance tests (tests/test_v2_conformance.py), run with the python of a venv that
holds one client SDK: ``triton`` (tritonclient[http,grpc]) or ``kserve`` (the KServe SDK). The two cannot share a
process: each ships generated protobuf modules for the same proto package, and the second import fails.

    <venv>/bin/python v2client.py triton|kserve

Reads one JSON request per line on stdin, answers one JSON line on stdout:

    {"op": "infer", "transport": "http"|"grpc", "url": "127.0.0.1:8080", "model": "m",
     "inputs": [{"name", "datatype", "shape", "data", "binary": bool, "parameters": {...}}],
     "outputs": null | [{"name", "binary": bool}], "parameters": {...} | null, "id": str | null,
     "request_compression": null | "gzip" | "deflate", "response_compression": null | "gzip" | "deflate"}
    {"op": "live" | "ready" | "server_metadata", "transport", "url"}
    {"op": "model_ready" | "model_metadata", "transport", "url", "model"}
    -> {"ok": true, "result": ...} | {"ok": false, "error": {"type", "status", "message"}}

An infer result is {"model_name", "model_version", "id", "outputs": [{"name", "datatype", "shape", "data" (flat, BYTES
as UTF-8 text), "binary" (whether the server sent the tensor in binary; the KServe SDK over REST: whether the
answer carried binary tensors)}]}. ``status`` is the HTTP status as a
string ("400") or the gRPC code's name ("INVALID_ARGUMENT"); ``parsed`` says whether the SDK read the server's
error body (tritonclient says so when it cannot).

One client per (transport, url), kept for the life of the process: the request after an error goes through the
same client, so over the same keep-alive connection or gRPC channel when the server kept it. Standard library and
the SDK only: this file runs outside the test venv."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any

import numpy as np

TIMEOUT = 120.0


def as_array(spec: dict[str, Any]) -> np.ndarray:
    if spec["datatype"] == "BYTES":
        values = [v.encode("utf-8") if isinstance(v, str) else v for v in spec["data"]]
        return np.array(values, dtype=np.object_).reshape(spec["shape"])
    dtype = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP64": np.float64}
    return np.array(spec["data"], dtype=dtype[spec["datatype"]]).reshape(spec["shape"])


def flat(array: np.ndarray | None) -> list[Any] | None:
    if array is None:
        return None
    values = np.asarray(array).reshape(-1).tolist()
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


class Triton:
    """tritonclient.http (geventhttpclient, one connection: concurrency=1) and tritonclient.grpc."""

    def __init__(self) -> None:
        import tritonclient.grpc as grpc_client
        import tritonclient.http as http_client
        from tritonclient.utils import InferenceServerException

        self.modules = {"http": http_client, "grpc": grpc_client}
        self.exception = InferenceServerException
        self.clients: dict[tuple[str, str], Any] = {}

    def client(self, transport: str, url: str) -> Any:
        key = (transport, url)
        if key not in self.clients:
            module = self.modules[transport]
            if transport == "http":
                self.clients[key] = module.InferenceServerClient(
                    url, concurrency=1, connection_timeout=TIMEOUT, network_timeout=TIMEOUT
                )
            else:
                self.clients[key] = module.InferenceServerClient(url)
        return self.clients[key]

    def run(self, request: dict[str, Any]) -> Any:
        transport, op = request["transport"], request["op"]
        client = self.client(transport, request["url"])
        if op == "live":
            return client.is_server_live()
        if op == "ready":
            return client.is_server_ready()
        if op == "model_ready":
            return client.is_model_ready(request["model"])
        if op == "server_metadata":
            return client.get_server_metadata() if transport == "http" else client.get_server_metadata(as_json=True)
        if op == "model_metadata":
            if transport == "http":
                return client.get_model_metadata(request["model"])
            return _int_shapes(client.get_model_metadata(request["model"], as_json=True))
        if op == "infer":
            return self.infer(client, transport, request)
        raise ValueError(f"unknown op {op!r}")

    def infer(self, client: Any, transport: str, request: dict[str, Any]) -> dict[str, Any]:
        module = self.modules[transport]
        inputs = []
        for spec in request["inputs"]:
            tensor = module.InferInput(spec["name"], spec["shape"], spec["datatype"])
            array = as_array(spec)
            if transport == "http":
                tensor.set_data_from_numpy(array, binary_data=spec.get("binary", True))
            else:
                tensor.set_data_from_numpy(array)
            for key, value in (spec.get("parameters") or {}).items():
                tensor._parameters[key] = value  # tritonclient has no setter: its own dict, sent as given
            inputs.append(tensor)
        outputs = None
        if request.get("outputs") is not None:
            if transport == "http":
                outputs = [module.InferRequestedOutput(o["name"], binary_data=o.get("binary", True))
                           for o in request["outputs"]]  # fmt: skip
            else:
                outputs = [module.InferRequestedOutput(o["name"]) for o in request["outputs"]]
        kwargs: dict[str, Any] = {"request_id": request.get("id") or "", "parameters": request.get("parameters")}
        if transport == "http":
            kwargs["request_compression_algorithm"] = request.get("request_compression")
            kwargs["response_compression_algorithm"] = request.get("response_compression")
            kwargs["timeout"] = None
        else:
            kwargs["compression_algorithm"] = request.get("request_compression")
            kwargs["client_timeout"] = TIMEOUT
        result = client.infer(request["model"], inputs, outputs=outputs, **kwargs)
        response = result.get_response() if transport == "http" else result.get_response(as_json=True)
        answered = []
        for output in response.get("outputs", []):
            name = output["name"]
            if transport == "http":
                binary = "binary_data_size" in (output.get("parameters") or {})
            else:
                binary = bool(response.get("raw_output_contents")) or "contents" not in output
            answered.append({"name": name, "datatype": output["datatype"], "shape": [int(d) for d in output["shape"]],
                             "data": flat(result.as_numpy(name)), "binary": binary})  # fmt: skip
        return {"model_name": response.get("model_name"), "model_version": response.get("model_version"),
                "id": response.get("id"), "outputs": answered}  # fmt: skip

    def error(self, exc: BaseException) -> dict[str, Any] | None:
        if not isinstance(exc, self.exception):
            return None
        status = str(exc.status() or "")
        message = exc.message() or ""
        parsed = "an exception occurred in the client while decoding the response" not in message
        return {"type": type(exc).__name__, "status": status.removeprefix("StatusCode."), "message": message,
                "parsed": parsed}  # fmt: skip


def _int_shapes(metadata: dict[str, Any]) -> dict[str, Any]:
    """gRPC's JSON form writes int64 fields as strings."""
    for key in ("inputs", "outputs"):
        for tensor in metadata.get(key, []):
            tensor["shape"] = [int(d) for d in tensor.get("shape", [])]
    return metadata


class KServe:
    """The KServe SDK's InferenceRESTClient (httpx, keep-alive) and InferenceGRPCClient (grpc.aio)."""

    def __init__(self) -> None:
        import grpc
        import httpx
        from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
        from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

        self.grpc, self.httpx = grpc, httpx
        self.rest_client, self.grpc_client, self.rest_config = InferenceRESTClient, InferenceGRPCClient, RESTConfig
        self.InferInput, self.InferRequest, self.RequestedOutput = InferInput, InferRequest, RequestedOutput
        self.loop = asyncio.new_event_loop()
        self.clients: dict[tuple[str, str], Any] = {}

    def client(self, transport: str, url: str) -> Any:
        key = (transport, url)
        if key not in self.clients:
            if transport == "http":
                self.clients[key] = self.rest_client(self.rest_config(protocol="v2", timeout=TIMEOUT))
            else:
                self.clients[key] = self.grpc_client(url, timeout=TIMEOUT)
        return self.clients[key]

    def run(self, request: dict[str, Any]) -> Any:
        return self.loop.run_until_complete(self._run(request))

    async def _run(self, request: dict[str, Any]) -> Any:
        transport, op, url = request["transport"], request["op"], request["url"]
        client = self.client(transport, url)
        base = f"http://{url}"
        rest = transport == "http"
        if op == "live":
            return await (client.is_server_live(base) if rest else client.is_server_live())
        if op == "ready":
            return await (client.is_server_ready(base) if rest else client.is_server_ready())
        if op == "model_ready":
            model = request["model"]
            return await (client.is_model_ready(base, model) if rest else client.is_model_ready(model))
        if op == "infer":
            return await self.infer(client, rest, base, request)
        raise ValueError(f"the KServe SDK has no {op!r}")

    async def infer(self, client: Any, rest: bool, base: str, request: dict[str, Any]) -> dict[str, Any]:
        inputs = []
        for spec in request["inputs"]:
            tensor = self.InferInput(spec["name"], spec["shape"], spec["datatype"], parameters=spec.get("parameters"))
            tensor.set_data_from_numpy(as_array(spec), binary_data=spec.get("binary", True))
            inputs.append(tensor)
        outputs = None
        if request.get("outputs") is not None:
            outputs = [self.RequestedOutput(o["name"], parameters={"binary_data": o.get("binary", False)})
                       for o in request["outputs"]]  # fmt: skip
        infer_request = self.InferRequest(request["model"], inputs, request_id=request.get("id"),
                                          parameters=request.get("parameters"), request_outputs=outputs)  # fmt: skip
        headers: dict[str, str] = {}
        if rest:
            response = await client.infer(base, infer_request, model_name=request["model"], response_headers=headers)
        else:
            response = await client.infer(infer_request)
        # The SDK turns binary outputs into data as it reads them: the header says the body carried binary tensors.
        binary = any(k.lower() == "inference-header-content-length" for k in headers)
        answered = [{"name": o.name, "datatype": o.datatype, "shape": [int(d) for d in o.shape],
                     "data": flat(o.as_numpy()), "binary": binary} for o in response.outputs]  # fmt: skip
        return {"model_name": response.model_name, "model_version": response.model_version or None,
                "id": response.id, "outputs": answered}  # fmt: skip

    def error(self, exc: BaseException) -> dict[str, Any] | None:
        if isinstance(exc, self.httpx.HTTPStatusError):
            body = exc.response.text
            try:
                parsed = isinstance(json.loads(body), dict) and "error" in json.loads(body)
            except ValueError:
                parsed = False
            return {"type": type(exc).__name__, "status": str(exc.response.status_code), "message": body,
                    "parsed": parsed}  # fmt: skip
        if isinstance(exc, self.grpc.RpcError) and hasattr(exc, "code"):
            return {"type": type(exc).__name__, "status": exc.code().name, "message": exc.details() or "",
                    "parsed": True}  # fmt: skip
        return None


def main() -> None:
    sdk = {"triton": Triton, "kserve": KServe}[sys.argv[1]]()
    print(json.dumps({"ok": True, "result": "ready"}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "result": sdk.run(request)}
        except Exception as exc:  # every failure is an answer: the test decides what it means
            error = sdk.error(exc) or {"type": type(exc).__name__, "status": "", "message": str(exc),
                                       "parsed": False, "traceback": traceback.format_exc()[-2000:]}  # fmt: skip
            answer = {"ok": False, "error": error}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
