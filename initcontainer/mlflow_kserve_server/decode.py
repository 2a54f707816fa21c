"""A V2 request as the model's input, decoded from the model's signature the way mlserver-mlflow 1.7.1 does
(SeldonIO/MLServer at 1.7.1: ``runtimes/mlflow/mlserver_mlflow/runtime.py`` ``predict``; ``mlserver/model.py``
``decode_request``; ``mlserver/codecs/{numpy,string,pandas,base64,datetime}.py``; ``mlserver_mlflow/codecs.py``).

1. Each input is decoded by its codec: the input's own ``parameters.content_type``, else the one the signature
   gives its name (``np``: an array of the request's shape; ``str``: a list of strings; ``base64``: a list of
   bytes; ``datetime``: a list of datetimes). An input with neither stays raw (its list of values).
2. The request is decoded by the request's ``parameters.content_type``, else the signature's: ``pd`` -> a
   DataFrame, one column per input; ``np`` / ``str`` -> the single input; ``dict`` -> {name: decoded input}.
   A model without a signature and a request without a content type (MLServer hands the model its request
   object then) get ``np`` for one input and ``pd`` for several.

BYTES elements arrive as text (JSON) or bytes (the binary extension, gRPC): ``str`` and ``np`` decode bytes as
UTF-8, ``base64`` takes bytes as they are (base64 is only JSON's way to carry bytes) and decodes text.
A BYTES input for a numeric or boolean column of the signature is refused here with 400 (pandas 3's Arrow-backed
strings would otherwise fail inside MLflow's schema enforcement with ``ArrowInvalid``, a 500).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from typing import Any

import numpy as np
import pandas as pd

from mlflow_kserve_server.datatypes import NUMERIC, NUMPY_DTYPES
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.signature import ModelSignature
from mlflow_kserve_server.tensors import InferRequest, Tensor

REQUEST_CONTENT_TYPES = ("pd", "np", "str", "dict")
# The per-input content types MLServer's codecs know (np, str, base64, datetime; pd_json is read by the pd codec).
INPUT_CONTENT_TYPES = ("np", "str", "base64", "datetime", "pd_json")
_RAW = object()  # an input no codec decoded


def decode(request: InferRequest, signature: ModelSignature) -> Any:
    if signature.named_inputs:
        unknown = [i.name for i in request.inputs if signature.input(i.name) is None]
        if unknown:
            expected = ", ".join(t.name for t in signature.inputs or ())
            raise V2Error(f"unknown input {', '.join(map(repr, unknown))}: the model's inputs are {expected}")
    for tensor in request.inputs:
        _check_datatype(tensor, signature)
        if tensor.content_type is not None and tensor.content_type not in INPUT_CONTENT_TYPES:
            raise V2Error(
                f"input '{tensor.name}': unknown content_type {tensor.content_type!r}; an input's content_type is one "
                f"of {', '.join(INPUT_CONTENT_TYPES)} (pd, dict: on the request's parameters)"
            )
    content_type = request.content_type or signature.content_type
    if content_type is None:
        content_type = "np" if len(request.inputs) == 1 else "pd"
    if content_type not in REQUEST_CONTENT_TYPES:
        raise V2Error(
            f"unknown request content_type {content_type!r}; use one of {', '.join(REQUEST_CONTENT_TYPES)} "
            "(or none: the model's signature decides)"
        )
    decoded = {i.name: _decode_input(i, signature) for i in request.inputs}
    if content_type == "pd":
        return _frame(request.inputs, decoded)
    if content_type == "dict":
        return {i.name: _raw_list(i) if decoded[i.name] is _RAW else decoded[i.name] for i in request.inputs}
    if len(request.inputs) != 1:
        raise V2Error(
            f"content_type {content_type!r} takes exactly one input, got {len(request.inputs)}; "
            "send one tensor, or content_type 'pd' for one column per input"
        )
    only = request.inputs[0]
    value = decoded[only.name]
    if value is not _RAW:
        return value
    return _as_strings(only) if content_type == "str" else _as_array(only)


def _check_datatype(tensor: Tensor, signature: ModelSignature) -> None:
    spec = signature.input(tensor.name)
    if spec is None or not spec.column or tensor.datatype != "BYTES":
        return
    if spec.datatype in NUMERIC or spec.datatype == "BOOL":
        raise V2Error(
            f"input '{tensor.name}': datatype BYTES, but the model's signature says this column is {spec.datatype}; "
            f"send {spec.datatype} (or another number type MLflow converts safely)"
        )


def _raw_list(tensor: Tensor) -> list[Any]:
    return tensor.strings() if tensor.datatype == "BYTES" else tensor.data.tolist()


def _decode_input(request_input: Tensor, signature: ModelSignature) -> Any:
    content_type = request_input.content_type
    if content_type is None:
        spec = signature.input(request_input.name)
        content_type = spec.content_type if spec else None
    if content_type == "np":
        return _as_array(request_input)
    if content_type == "str":
        return _as_strings(request_input)
    if content_type == "base64":
        if request_input.datatype != "BYTES":
            raise V2Error(f"input '{request_input.name}': content_type 'base64' needs datatype BYTES")
        return [_from_base64(v) for v in request_input.data.tolist()]
    if content_type == "datetime":
        return [_from_iso(request_input.name, v) for v in _as_strings(request_input)]
    return _RAW  # none, or pd_json (read when the DataFrame is built)


def _as_array(request_input: Tensor) -> np.ndarray:
    values = request_input.data
    if request_input.datatype == "BYTES":
        values = np.array(request_input.strings(), dtype=str)
    return values.reshape(request_input.shape)


def _as_strings(request_input: Tensor) -> list[Any]:
    if request_input.datatype != "BYTES":
        raise V2Error(f"input '{request_input.name}': content_type 'str' needs datatype BYTES")
    return request_input.strings()


def _frame(inputs: list[Tensor], decoded: dict[str, Any]) -> pd.DataFrame:
    """The columns as a DataFrame. Numbers of one dtype (a tabular model's usual request) become one 2-D block:
    a tenth of the time of a DataFrame of Series (measured: 13 one-row columns, 32 us against 560 us). The column
    names are an object Index: pandas 3 would make them an Arrow string Index, whose construction alone took 65
    times as long (and predict a quarter longer, sklearn checking feature names against it)."""
    columns = {i.name: _column(i, decoded[i.name]) for i in inputs}
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{name}: {len(c)}" for name, c in columns.items())
        raise V2Error(f"the columns of a 'pd' request must have the same length ({sizes})")
    arrays = list(columns.values())
    names = pd.Index(list(columns), dtype=object)
    if len(arrays) > 1 and all(isinstance(a, np.ndarray) for a in arrays) and len({a.dtype for a in arrays}) == 1:
        return pd.DataFrame(np.column_stack(arrays), columns=names)
    return pd.DataFrame(columns, columns=names)


def _column(request_input: Tensor, value: Any) -> pd.Series | np.ndarray:
    """One input as a DataFrame column (MLServer's ``PandasCodec``): numbers as a 1-D array of the input's
    datatype, anything else as a Series."""
    if request_input.content_type == "pd_json":
        return pd.Series([_from_json(request_input.name, v) for v in _as_strings(request_input)])
    if value is _RAW:
        value = request_input.strings() if request_input.datatype == "BYTES" else request_input.data
    if request_input.datatype == "BYTES":
        return pd.Series(value)
    if isinstance(value, np.ndarray):
        rows = request_input.shape[0] if request_input.shape else 1
        if value.size != rows:
            raise V2Error(
                f"input '{request_input.name}': a column needs shape [N] or [N, 1], got {request_input.shape}; "
                "send one input per column"
            )
        return np.asarray(value.reshape(-1), dtype=NUMPY_DTYPES[request_input.datatype])
    return pd.Series(value, dtype=NUMPY_DTYPES[request_input.datatype])


def _from_base64(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):  # bytes came as bytes (binary extension, gRPC): no base64
        return value
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise V2Error(f"{value[:40]!r} is not base64 (content_type base64)") from None
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        return raw  # not base64: the bytes as sent (MLServer's Base64Codec does the same)


def _from_iso(name: str, value: str | None) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise V2Error(f"input '{name}': {value!r} is not an ISO 8601 date and time") from None


def _from_json(name: str, value: str | None) -> Any:
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        raise V2Error(f"input '{name}': {value!r} is not a JSON document (content_type pd_json)") from None
