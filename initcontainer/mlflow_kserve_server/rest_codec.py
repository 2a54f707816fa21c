"""V2 REST bodies <-> the internal model (tensors.py): JSON, and JSON followed by binary tensor data (Triton
``docs/protocol/extension_binary_data.md``: the ``Inference-Header-Content-Length`` header gives the JSON's length;
an input with ``parameters.binary_data_size`` takes that many bytes of what follows, in input order; an output is
binary when its requested ``binary_data`` says so, else when the request's ``binary_data_output`` does, and is then
written after the JSON in output order with its ``binary_data_size``). KServe reads and writes the same:
``infer_type.py`` ``InferRequest.from_bytes`` (lines 593-666) and ``InferResponse.to_rest`` (lines 1328-1404)."""

from __future__ import annotations

from typing import Any

from mlflow_kserve_server import jsonlib
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.raw import from_raw, to_raw
from mlflow_kserve_server.tensors import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    check_datatype,
    check_name,
    check_parameters,
    check_shape,
    from_values,
    make_request,
)

HEADER_LENGTH = "inference-header-content-length"
JSON = "application/json"
BINARY = "application/octet-stream"


def decode_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """A request body (already inflated) and its ``Inference-Header-Content-Length`` header, if any."""
    json_end = len(body)
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise V2Error(
                f"Inference-Header-Content-Length {header_length!r} is not the length of the JSON at the start of "
                f"the {len(body)}-byte body; send the JSON's byte length"
            )
        json_end = int(header_length)
    try:
        payload = jsonlib.loads(body[:json_end])
    except (ValueError, UnicodeDecodeError) as exc:
        hint = "" if header_length else " (binary tensor data needs the Inference-Header-Content-Length header)"
        raise V2Error(f"the request body is not valid JSON ({exc}){hint}; send a V2 inference request object") from None
    if not isinstance(payload, dict):
        raise V2Error("the request body must be a JSON object with an 'inputs' list (V2 inference request)")
    raw = memoryview(body)[json_end:]
    inputs = payload.get("inputs")
    if not isinstance(inputs, list):
        raise V2Error("the request needs 'inputs': a non-empty list of tensors (name, shape, datatype, data)")
    tensors, used = [], 0
    for index, item in enumerate(inputs):
        tensor, size = _input(index, item, raw[used:])
        tensors.append(tensor)
        used += size
    if used != len(raw):
        raise V2Error(
            f"the body has {len(raw)} bytes of binary tensor data after the JSON, but the inputs' binary_data_size "
            f"add up to {used}; give each binary input its size, in input order"
        )
    return make_request(tensors, payload.get("id"), payload.get("parameters"), _requested(payload.get("outputs")))


def _input(index: int, raw: Any, rest: memoryview) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise V2Error(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = check_name(raw.get("name"), f"inputs[{index}]")
    where = f"input '{name}'"
    shape = check_shape(raw.get("shape"), where)
    datatype = check_datatype(raw.get("datatype"), where)
    parameters = check_parameters(raw.get("parameters"), where)
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in raw:
            raise V2Error(f"{where} has both 'data' and parameters.binary_data_size; send one of them")
        if size > len(rest):
            raise V2Error(f"{where}: binary_data_size {size} runs past the end of the body ({len(rest)} bytes left)")
        data = from_raw(rest[:size], datatype, shape, where)
        parameters = {k: v for k, v in parameters.items() if k != "binary_data_size"}
        return Tensor(name, datatype, shape, data, parameters), size
    if "data" not in raw:
        raise V2Error(f"{where} has no 'data' (nor parameters.binary_data_size for binary data)")
    return Tensor(name, datatype, shape, from_values(raw["data"], datatype, shape, where), parameters), 0


def _requested(outputs: Any) -> list[RequestedOutput] | None:
    if outputs is None or outputs == []:  # none named: every output (Triton does the same)
        return None
    if not isinstance(outputs, list):
        raise V2Error("'outputs' must be a list of {\"name\": ...} objects")
    requested = []
    for index, item in enumerate(outputs):
        if not isinstance(item, dict):
            raise V2Error(f"outputs[{index}] must be an object with a 'name'")
        name = check_name(item.get("name"), f"outputs[{index}]")
        requested.append(RequestedOutput(name, check_parameters(item.get("parameters"), f"output '{name}'")))
    return requested


def encode_response(response: InferResponse, request: InferRequest | None) -> tuple[bytes, int | None]:
    """The response body, and the JSON's length when binary tensor data follows it (for the
    ``Inference-Header-Content-Length`` header; None: the body is JSON alone)."""
    binary_default = request.binary_outputs if request else False
    asked = {o.name: o.binary for o in request.outputs or ()} if request else {}
    outputs, tails = [], []
    for tensor in response.outputs:
        binary = asked.get(tensor.name)
        if binary is None:
            binary = binary_default
        item: dict[str, Any] = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
        if binary:
            tail = to_raw(tensor.data, tensor.datatype)
            tails.append(tail)
            item["parameters"] = {**tensor.parameters, "binary_data_size": len(tail)}
        else:
            if tensor.parameters:
                item["parameters"] = tensor.parameters
            item["data"] = jsonlib.values(tensor.data) if tensor.datatype != "BYTES" else _texts(tensor)
        outputs.append(item)
    answer: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        answer["model_version"] = response.model_version
    answer["id"] = response.id
    if response.parameters:
        answer["parameters"] = response.parameters
    answer["outputs"] = outputs
    try:
        head = jsonlib.dumps(answer)
    except (TypeError, ValueError) as exc:
        raise V2Error(f"the prediction cannot be written as JSON: {exc}", 500) from None
    if not tails:
        return head, None
    return b"".join([head, *tails]), len(head)


def _texts(tensor: Tensor) -> list[Any]:
    """A BYTES output's elements as JSON strings (bytes that are not UTF-8 cannot be: ask for binary output)."""
    try:
        return tensor.strings()
    except V2Error:
        raise V2Error(
            f"output '{tensor.name}' holds bytes that are not UTF-8 text, which JSON cannot carry; ask for it as "
            'binary data (outputs: [{"name": ..., "parameters": {"binary_data": true}}])',
        ) from None


def encode_json(payload: Any) -> bytes:
    return jsonlib.dumps(payload)
