"""The Open Inference Protocol (V2) request body, parsed and checked before any model code runs.

Each tensor's ``data`` is checked against its ``datatype`` and ``shape`` here (MLServer would pass most mistakes on
to NumPy or the model and answer 500); a bad request gets a ``V2Error`` naming the input and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlflow_kserve_server.errors import V2Error

# V2 datatype -> NumPy dtype (BYTES: UTF-8 strings in JSON, kept as Python str in an object array)
NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
# The per-input content types MLServer's codecs know (np, str, base64, datetime; pd_json is read by the pd codec).
INPUT_CONTENT_TYPES = ("np", "str", "base64", "datetime", "pd_json")
# Request parameters that are the protocol's, not the model's (MLServer's Parameters fields).
RESERVED_PARAMETERS = ("content_type", "headers")


@dataclass
class RequestInput:
    name: str
    shape: list[int]
    datatype: str
    values: np.ndarray  # the data, flat, checked: one element per shape element, typed by datatype
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        return self.parameters.get("content_type")


@dataclass
class InferenceRequest:
    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        return self.parameters.get("content_type")

    def model_params(self) -> dict[str, Any] | None:
        """The request parameters meant for ``predict(params=...)`` (MLServer: ``parameters.model_extra``)."""
        params = {k: v for k, v in self.parameters.items() if k not in RESERVED_PARAMETERS}
        return params or None


def parse_request(body: bytes) -> InferenceRequest:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise V2Error(f"the request body is not valid JSON ({exc}); send a V2 inference request object") from None
    if not isinstance(payload, dict):
        raise V2Error("the request body must be a JSON object with an 'inputs' list (V2 inference request)")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error("the request needs 'inputs': a non-empty list of tensors (name, shape, datatype, data)")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("'id' must be a string")
    parsed = [parse_input(i, raw) for i, raw in enumerate(inputs)]
    names = [i.name for i in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise V2Error(f"input names must be unique; repeated: {', '.join(duplicates)}")
    return InferenceRequest(inputs=parsed, id=request_id, parameters=_parameters(payload, "the request"))


def parse_input(index: int, raw: Any) -> RequestInput:
    if not isinstance(raw, dict):
        raise V2Error(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(f"inputs[{index}] needs a 'name' (a non-empty string)")
    where = f"input '{name}'"
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise V2Error(f"{where}: 'shape' must be a list of non-negative integers, e.g. [2, 3]")
    datatype = raw.get("datatype")
    if datatype not in NUMPY_DTYPES:
        raise V2Error(f"{where}: unknown datatype {datatype!r}; use one of {', '.join(NUMPY_DTYPES)}")
    if "data" not in raw:
        raise V2Error(f"{where} has no 'data'")
    parameters = _parameters(raw, where)
    content_type = parameters.get("content_type")
    if content_type is not None and content_type not in INPUT_CONTENT_TYPES:
        raise V2Error(
            f"{where}: unknown content_type {content_type!r}; an input's content_type is one of "
            f"{', '.join(INPUT_CONTENT_TYPES)} (pd, dict: on the request's parameters)"
        )
    values = tensor_values(raw["data"], datatype, shape, where)
    return RequestInput(name=name, shape=shape, datatype=datatype, values=values, parameters=parameters)


def tensor_values(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """``data`` (flat or nested, as V2 allows) as a flat array of ``datatype``, or a V2Error naming the mistake."""
    if not isinstance(data, list):
        data = [data]
    integers = np.dtype(NUMPY_DTYPES[datatype]).kind in "iu"
    try:
        flat = np.asarray(data, dtype=object if datatype == "BYTES" else None).reshape(-1)
        if integers and flat.dtype.kind not in "iub":  # e.g. int64 and uint64 values together: NumPy makes floats
            flat = np.asarray(data, dtype=object).reshape(-1)
    except ValueError:
        raise V2Error(f"{where}: 'data' is a ragged nested list; send it flat, row-major, with 'shape'") from None
    expected = math.prod(shape)
    if flat.size != expected:
        raise V2Error(
            f"{where}: 'data' has {flat.size} elements but shape {shape} needs {expected}; "
            "send the data flat (row-major) with the shape that matches it"
        )
    try:
        return _typed(flat, datatype, where)
    except (OverflowError, ValueError, TypeError) as exc:
        raise V2Error(f"{where}: 'data' does not fit {datatype} ({exc})") from None


def _typed(flat: np.ndarray, datatype: str, where: str) -> np.ndarray:
    kind = flat.dtype.kind
    if datatype == "BYTES":
        bad = next((v for v in flat.tolist() if v is not None and not isinstance(v, str)), _NONE)
        if bad is not _NONE:
            raise V2Error(f"{where}: BYTES data must be strings; found {bad!r}")
        return flat
    if datatype == "BOOL":
        if kind != "b" and flat.size:
            raise V2Error(f"{where}: BOOL data must be true or false; found {_first_not(flat, bool)!r}")
        return flat.astype(np.bool_)
    dtype = np.dtype(NUMPY_DTYPES[datatype])
    if dtype.kind in "iu":
        if kind not in "iu" and flat.size:
            bad = _first_not(flat, int)
            if kind != "O" or bad is not None:
                raise V2Error(f"{where}: {datatype} data must be integers; found {bad!r}")
        info = np.iinfo(dtype)
        if flat.size and (flat.min() < info.min or flat.max() > info.max):
            raise V2Error(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
        return flat.astype(dtype)
    # FP16/32/64: numbers; null stands for a missing value (NaN), as MLServer writes NaN in its answers
    if kind not in "iuf" and flat.size:
        values = flat.tolist()
        if kind != "O" or not all(v is None or _is_number(v) for v in values):
            raise V2Error(f"{where}: {datatype} data must be numbers; found {_first_not(flat, float)!r}")
        flat = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return flat.astype(dtype)


_NONE = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_not(flat: np.ndarray, kind: type) -> Any:
    for value in flat.tolist():
        if kind is bool and not isinstance(value, bool):
            return value
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return value
        if kind is float and value is not None and not _is_number(value):
            return value
    return None


def _parameters(raw: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = raw.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise V2Error(f"{where}: 'parameters' must be an object")
    content_type = parameters.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise V2Error(f"{where}: parameters.content_type must be a string")
    return parameters
