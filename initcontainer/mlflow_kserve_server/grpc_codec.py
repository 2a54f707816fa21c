"""V2 gRPC messages <-> the internal model (tensors.py), as KServe translates them (``infer_type.py``
``InferRequest.from_grpc`` lines 548-591, ``get_content`` 383-404, ``InferResponse.to_grpc`` 1406-1465): an input's
data comes from ``raw_input_contents`` (the same bytes as REST's binary extension: raw.py) or from its typed
``contents``; the outputs go back as ``raw_output_contents`` when the request sent raw inputs (what tritonclient
and KServe's client do), else as typed ``contents`` (FP16, which has no typed field, always raw)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.grpc_proto import messages
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

# V2 datatype -> the InferTensorContents field that carries it (KServe constants.GRPC_CONTENT_DATATYPE_MAPPINGS)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_of(parameters: Any) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as a dict of plain values."""
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def set_parameters(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        else:
            parameter.string_param = str(value)


def decode_request(message: Any) -> tuple[InferRequest, bool]:
    """A ``ModelInferRequest`` as an InferRequest, and whether its inputs came raw (then so do the outputs)."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise V2Error(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; send one per input, in "
            "input order (or every input's data in contents)"
        )
    tensors = []
    for index, item in enumerate(message.inputs):
        name = check_name(item.name, f"inputs[{index}]")
        where = f"input '{name}'"
        datatype = check_datatype(item.datatype, where)
        shape = check_shape(list(item.shape), where)
        parameters = check_parameters(parameters_of(item.parameters), where)
        if raw:
            if item.HasField("contents"):
                raise V2Error(f"{where} has both contents and raw_input_contents; send one of them")
            data = from_raw(raw[index], datatype, shape, where)
        elif datatype == "FP16":
            raise V2Error(f"{where}: FP16 has no typed contents field; send it in raw_input_contents")
        else:
            data = from_values(_contents(item.contents, datatype), datatype, shape, where)
        tensors.append(Tensor(name, datatype, shape, data, parameters))
    outputs = [
        RequestedOutput(check_name(o.name, f"outputs[{i}]"), check_parameters(parameters_of(o.parameters), o.name))
        for i, o in enumerate(message.outputs)
    ]
    request = make_request(tensors, message.id or None, parameters_of(message.parameters), outputs or None)
    request.parameters.pop("binary_data_output", None)  # REST's: gRPC chooses raw outputs by its inputs
    return request, bool(raw)


def _contents(contents: Any, datatype: str) -> np.ndarray:
    values = getattr(contents, CONTENTS[datatype])
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    return np.asarray(values)


def encode_response(response: InferResponse, raw_outputs: bool) -> Any:
    """An InferResponse as a ``ModelInferResponse``."""
    m = messages()
    message = m.ModelInferResponse(model_name=response.model_name, model_version=response.model_version or "",
                                   id=response.id)  # fmt: skip
    set_parameters(message.parameters, response.parameters)
    raw = raw_outputs or any(t.datatype == "FP16" for t in response.outputs)
    for tensor in response.outputs:
        output = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        set_parameters(output.parameters, tensor.parameters)
        if raw:
            message.raw_output_contents.append(to_raw(tensor.data, tensor.datatype))
        elif tensor.datatype == "BYTES":
            output.contents.bytes_contents.extend(
                b"" if v is None else v if isinstance(v, bytes) else str(v).encode("utf-8") for v in tensor.data
            )
        else:
            getattr(output.contents, CONTENTS[tensor.datatype]).extend(tensor.data.tolist())
    return message


def encode_metadata(metadata: dict[str, Any]) -> Any:
    """The REST model metadata (dataplane.model_metadata) as a ``ModelMetadataResponse``."""
    m = messages()
    message = m.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                      platform=metadata["platform"])  # fmt: skip
    for key in ("inputs", "outputs"):
        for tensor in metadata[key]:
            getattr(message, key).add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    return message
