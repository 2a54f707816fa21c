"""The one internal request/response model every transport translates into and out of (KServe's shape:
``python/kserve/kserve/protocol/infer_type.py`` ``InferRequest`` / ``InferResponse``, which its REST JSON, REST
binary and gRPC codecs all decode into and encode from). REST JSON and the binary tensor extension
(``rest_codec``) and gRPC (``grpc_codec``) only translate; ``dataplane`` does the work once.

A ``Tensor``'s data is always a flat NumPy array of its datatype, one element per element of its shape, already
checked: BYTES elements are ``str`` (from JSON) or ``bytes`` (binary or gRPC), or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlflow_kserve_server.datatypes import DATATYPES, NUMPY_DTYPES
from mlflow_kserve_server.errors import V2Error

# Parameters that belong to the protocol, not to the model's predict(params=...): MLServer's Parameters fields
# (content_type, headers) and the binary tensor extension's (Triton extension_binary_data.md).
PROTOCOL_PARAMETERS = frozenset({"content_type", "headers", "binary_data_output", "binary_data", "binary_data_size"})


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # flat, checked: math.prod(shape) elements of NUMPY_DTYPES[datatype]
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        return self.parameters.get("content_type")

    def strings(self) -> list[str | None]:
        """BYTES elements as text: bytes are decoded as UTF-8 (a V2Error naming the tensor when they are not)."""
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else v for v in self.data.tolist()]
        except UnicodeDecodeError:
            raise V2Error(f"input '{self.name}': BYTES elements are not UTF-8 text; send text, or bytes to a "
                          "binary (base64) input") from None  # fmt: skip


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary(self) -> bool | None:
        """Triton's ``binary_data`` on a requested output: None when not given (the request's default applies)."""
        return self.parameters.get("binary_data")


@dataclass
class InferRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None: every output, in the model's order

    @property
    def content_type(self) -> str | None:
        return self.parameters.get("content_type")

    @property
    def binary_outputs(self) -> bool:
        """Triton's ``binary_data_output``: every output as binary unless its own ``binary_data`` says otherwise."""
        return bool(self.parameters.get("binary_data_output", False))

    def model_params(self) -> dict[str, Any] | None:
        """The request parameters meant for ``predict(params=...)`` (MLServer: ``parameters.model_extra``)."""
        params = {k: v for k, v in self.parameters.items() if k not in PROTOCOL_PARAMETERS}
        return params or None


@dataclass
class InferResponse:
    model_name: str
    model_version: str | None
    id: str
    outputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)


def make_request(
    inputs: list[Tensor], request_id: Any, parameters: Any, outputs: list[RequestedOutput] | None
) -> InferRequest:
    """An InferRequest from a transport's parts, checked the same way whichever transport sent them."""
    if not inputs:
        raise V2Error("the request needs 'inputs': a non-empty list of tensors (name, shape, datatype, data)")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("'id' must be a string")
    names = [i.name for i in inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise V2Error(f"input names must be unique; repeated: {', '.join(repeated)}")
    if outputs is not None:
        asked = [o.name for o in outputs]
        twice = sorted({n for n in asked if asked.count(n) > 1})
        if twice:
            raise V2Error(f"requested output names must be unique; repeated: {', '.join(twice)}")
    return InferRequest(inputs, request_id or None, check_parameters(parameters, "the request"), outputs)


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise V2Error(f"{where} needs a 'name' (a non-empty string)")
    return name


def check_datatype(datatype: Any, where: str) -> str:
    if datatype not in NUMPY_DTYPES:
        raise V2Error(f"{where}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}")
    return datatype


def check_shape(shape: Any, where: str) -> list[int]:
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise V2Error(f"{where}: 'shape' must be a list of non-negative integers, e.g. [2, 3]")
    return list(shape)


def check_parameters(parameters: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` object; the protocol's own keys must have their documented types (Triton
    ``docs/protocol/extension_binary_data.md``: binary_data_size int64, binary_data and binary_data_output bool)."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise V2Error(f"{where}: 'parameters' must be an object")
    content_type = parameters.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise V2Error(f"{where}: parameters.content_type must be a string")
    for key in ("binary_data", "binary_data_output"):
        if key in parameters and not isinstance(parameters[key], bool):
            raise V2Error(f"{where}: parameters.{key} must be true or false, got {parameters[key]!r}")
    size = parameters.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise V2Error(f"{where}: parameters.binary_data_size must be a non-negative integer, got {size!r}")
    return parameters


def from_values(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """``data`` (flat or nested lists, as V2 JSON allows; or a transport's list of typed values) as a flat array
    of ``datatype``, or a V2Error naming the mistake."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1)
    else:
        if not isinstance(data, list):
            data = [data]
        integers = NUMPY_DTYPES[datatype].kind in "iu"
        try:
            flat = np.asarray(data, dtype=object if datatype == "BYTES" else None).reshape(-1)
            if integers and flat.dtype.kind not in "iub":  # e.g. int64 and uint64 values together: NumPy makes floats
                flat = np.asarray(data, dtype=object).reshape(-1)
        except ValueError:
            raise V2Error(f"{where}: 'data' is a ragged nested list; send it flat, row-major, with 'shape'") from None
    check_count(flat.size, shape, where)
    try:
        return _typed(flat, datatype, where)
    except (OverflowError, ValueError, TypeError) as exc:
        raise V2Error(f"{where}: 'data' does not fit {datatype} ({exc})") from None


def check_count(count: int, shape: list[int], where: str) -> None:
    expected = math.prod(shape)
    if count != expected:
        raise V2Error(
            f"{where}: 'data' has {count} elements but shape {shape} needs {expected}; "
            "send the data flat (row-major) with the shape that matches it"
        )


def _typed(flat: np.ndarray, datatype: str, where: str) -> np.ndarray:
    kind = flat.dtype.kind
    if datatype == "BYTES":
        if kind != "O":
            flat = flat.astype(object)
        bad = next((v for v in flat.tolist() if v is not None and not isinstance(v, (str, bytes))), _NONE)
        if bad is not _NONE:
            raise V2Error(f"{where}: BYTES data must be strings; found {bad!r}")
        return flat
    if datatype == "BOOL":
        if kind != "b" and flat.size:
            raise V2Error(f"{where}: BOOL data must be true or false; found {_first_not(flat, bool)!r}")
        return flat.astype(np.bool_)
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind in "iu":
        if kind not in "iu" and flat.size:
            bad = _first_not(flat, int)
            if kind != "O" or bad is not None:
                raise V2Error(f"{where}: {datatype} data must be integers; found {bad!r}")
        info = np.iinfo(dtype)
        if flat.size and (flat.min() < info.min or flat.max() > info.max):
            raise V2Error(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
        return flat.astype(dtype, copy=False)
    # FP16/32/64: numbers; null stands for a missing value (NaN), as the answers write NaN
    if kind not in "iuf" and flat.size:
        values = flat.tolist()
        if kind != "O" or not all(v is None or _is_number(v) for v in values):
            raise V2Error(f"{where}: {datatype} data must be numbers; found {_first_not(flat, float)!r}")
        flat = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return flat.astype(dtype, copy=False)


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
