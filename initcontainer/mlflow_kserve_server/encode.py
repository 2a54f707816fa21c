"""A model's prediction as V2 outputs, the way MLServer 1.7.1 + mlserver-mlflow 1.7.1 encode it, so a client
cannot tell which server answered (SeldonIO/MLServer at 1.7.1: ``mlserver/model.py`` ``encode_response``, the
request codecs in ``mlserver/codecs/{string,numpy,pandas}.py`` and ``runtimes/mlflow/mlserver_mlflow/codecs.py``).

MLServer tries its request codecs in registration order and takes the first that fits:
a list of str -> one BYTES output ``output-1`` (content type ``str``); a NumPy array -> one output ``output-1``
(``np``); a DataFrame -> one output per column (``pd``); a dict of arrays -> one output per key (``dict``).
Shapes of one dimension get a trailing 1 (``[N]`` -> ``[N, 1]``); NaN and infinities are written as null.

Where MLServer 1.7.1 fails with a 500 (a Series, a list of numbers, a scalar, a dict of lists, a string, pandas
extension or datetime dtypes, non-string column names), the answer here is the nearest of those shapes: the value
as a NumPy array (``np``), each dict value as an array (``dict``), a string as a one-element ``str`` list.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SINGLE_OUTPUT = "output-1"
_DATES = (datetime.date, datetime.time)

_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class EncodeError(Exception):
    """The prediction has no V2 form (answered 500: the model's output, not the request, is at fault)."""


@dataclass(frozen=True)
class Encoded:
    outputs: list[dict[str, Any]]
    content_type: str


def datatype_of(dtype: Any) -> str:
    """The V2 datatype of a NumPy (or pandas) dtype."""
    name = str(dtype)
    if name in _DATATYPES:
        return _DATATYPES[name]
    kind = getattr(dtype, "kind", "O")
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # pandas nullable Int64, Float64, boolean, ...
    if numpy_dtype is not None and str(numpy_dtype) in _DATATYPES:
        return _DATATYPES[str(numpy_dtype)]
    if kind in "OSUMm":
        return "BYTES"
    raise EncodeError(f"the model returned values of dtype {name}, which has no V2 datatype")


def encode(prediction: Any) -> Encoded:
    if _is_list_of_str(prediction):
        return Encoded([string_output(SINGLE_OUTPUT, prediction)], "str")
    if isinstance(prediction, np.ndarray):
        return Encoded([array_output(SINGLE_OUTPUT, prediction)], "np")
    if isinstance(prediction, pd.DataFrame):
        return Encoded([column_output(str(name), prediction.iloc[:, i]) for i, name in enumerate(prediction)], "pd")
    if isinstance(prediction, dict):
        return Encoded([array_output(str(k), _as_array(v)) for k, v in prediction.items()], "dict")
    # MLServer fails on what follows; the nearest answer it gives for similar values:
    if isinstance(prediction, (str, bytes)):
        return Encoded([string_output(SINGLE_OUTPUT, [_text(prediction)])], "str")
    if isinstance(prediction, (pd.Series, pd.Index, list, tuple, int, float, bool, np.generic)):
        return Encoded([array_output(SINGLE_OUTPUT, _as_array(prediction))], "np")
    raise EncodeError(f"the model returned a {type(prediction).__name__}, which has no V2 form")


def string_output(name: str, values: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [len(values), 1],
        "datatype": "BYTES",
        "parameters": {"content_type": "str"},
        "data": [_text(v) for v in values],
    }


def array_output(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = datatype_of(array.dtype)
    shape = list(array.shape) if array.ndim > 1 else [*array.shape, 1]
    flat = array.reshape(-1)
    if datatype == "BYTES":
        data = [_json_value(v) for v in _bytes_values(flat)]
    else:
        data = _numbers(flat)
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"content_type": "np"}, "data": data}


def column_output(name: str, column: pd.Series) -> dict[str, Any]:
    """One DataFrame column (MLServer's ``PandasCodec``): numbers as they are, strings as ``str``, anything
    else in an object column as one JSON document per row (``pd_json``)."""
    datatype = datatype_of(column.dtype)
    output: dict[str, Any] = {"name": name, "shape": [len(column), 1], "datatype": datatype}
    if datatype != "BYTES":
        output["data"] = [None if _is_null(v) or _is_infinite(v) else v for v in column.tolist()]
        return output
    values = _bytes_values(column.to_numpy(dtype=object))
    if all(isinstance(v, (str, bytes)) for v in values):
        output["parameters"] = {"content_type": "str"}
        output["data"] = [_text(v) for v in values]
    else:
        output["parameters"] = {"content_type": "pd_json"}
        output["data"] = [_json_document(v) for v in values]
    return output


def _numbers(flat: np.ndarray) -> list[Any]:
    data = flat.tolist()
    if flat.dtype.kind in "fc" and not np.isfinite(flat).all():
        return [v if math.isfinite(v) else None for v in data]
    return data


def _bytes_values(flat: np.ndarray) -> list[Any]:
    if flat.dtype.kind == "M":
        return [None if np.isnat(v) else str(v) for v in flat]
    if flat.dtype.kind == "m":
        return [None if np.isnat(v) else str(v) for v in flat]
    return [None if _is_null(v) else v.isoformat() if isinstance(v, _DATES) else v for v in flat.tolist()]


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA


def _is_infinite(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (pd.Series, pd.Index)):
        return value.to_numpy()
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise EncodeError(f"the model returned a ragged {type(value).__name__}, which has no V2 shape: {exc}") from None
    if array.dtype.kind == "O" and array.ndim and not all(isinstance(v, (str, bytes, type(None))) for v in array.flat):
        raise EncodeError(f"the model returned a {type(value).__name__} of mixed values, which has no V2 datatype")
    return array


def _is_list_of_str(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _json_value(value: Any) -> Any:
    """An element of a BYTES tensor as JSON: strings as they are, bytes as UTF-8, NumPy scalars as Python's."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_document(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
