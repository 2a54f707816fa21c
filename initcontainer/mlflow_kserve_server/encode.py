"""A model's prediction as V2 output tensors, named and shaped as the model metadata declares them.

Which outputs, and their content types, follow MLServer 1.7.1 + mlserver-mlflow 1.7.1 (SeldonIO/MLServer at 1.7.1:
``mlserver/model.py`` ``encode_response``, the request codecs in ``mlserver/codecs/{string,numpy,pandas}.py``):
a list of str -> one BYTES output (content type ``str``); a NumPy array -> one output (``np``); a DataFrame -> one
output per column (``pd``; strings ``str``, other objects one JSON document per row, ``pd_json``); a dict of
arrays -> one output per key (``dict``). NaN and infinities are written as null in JSON.

Names and shapes agree with the metadata (signature.py), which MLServer's do not: mlserver-mlflow's metadata calls
an unnamed output ``output-0`` with the signature's shape (``metadata.py`` ``to_metadata_tensors``: ``f"{prefix}
{idx}"`` from 0), while MLServer's infer answers ``output-1`` with a trailing 1 (``codecs/utils.py``
``encode_response``: ``f"{DefaultOutputPrefix}1"``; ``codecs/numpy.py`` ``to_datatype``/``_encode_shape``), so a
client that reads the metadata finds nothing. KServe's own model server names a single output ``output-0`` with the
array's own shape (``python/kserve/kserve/utils/utils.py`` ``get_predict_response``, lines 221-243), and so does
this server: a single output takes the signature's output name (``output-0`` when unnamed) and the array's own
shape, except that an output the signature declares as a column ([-1, 1]) is [N, 1]; DataFrame columns are
[N, 1] (their metadata shape); a dict's arrays keep their own shapes.

Where MLServer 1.7.1 fails with a 500 (a Series, a list of numbers, a scalar, a dict of lists, a string, pandas
extension or datetime dtypes, non-string column names), the answer here is the nearest of those shapes.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlflow_kserve_server.datatypes import NoDatatype, datatype_of
from mlflow_kserve_server.signature import Spec
from mlflow_kserve_server.tensors import Tensor

SINGLE_OUTPUT = "output-0"
_DATES = (datetime.date, datetime.time)


class EncodeError(Exception):
    """The prediction has no V2 form (answered 500: the model's output, not the request, is at fault)."""


@dataclass(frozen=True)
class Encoded:
    outputs: list[Tensor]
    content_type: str


def encode(prediction: Any, declared: list[Spec] | None = None) -> Encoded:
    """``prediction`` as output tensors; ``declared``: the signature's outputs (None: the model has none)."""
    try:
        return _encode(prediction, declared or [])
    except NoDatatype as exc:
        raise EncodeError(f"the model returned {exc}") from None


def _encode(prediction: Any, declared: list[Spec]) -> Encoded:
    single = declared[0] if len(declared) == 1 else None
    name = single.name if single else SINGLE_OUTPUT
    column = bool(single and single.column)
    if _is_list_of_str(prediction):
        return Encoded([string_output(name, prediction, column)], "str")
    if isinstance(prediction, np.ndarray):
        return Encoded([array_output(name, prediction, column)], "np")
    if isinstance(prediction, pd.DataFrame):
        return Encoded([column_output(str(c), prediction.iloc[:, i]) for i, c in enumerate(prediction)], "pd")
    if isinstance(prediction, dict):
        outputs = []
        for key, value in prediction.items():
            spec = next((d for d in declared if d.name == str(key)), None)
            outputs.append(array_output(str(key), _as_array(value), bool(spec and spec.column)))
        return Encoded(outputs, "dict")
    # MLServer fails on what follows; the nearest answer it gives for similar values:
    if isinstance(prediction, (str, bytes)):
        return Encoded([string_output(name, [_text(prediction)], column)], "str")
    if isinstance(prediction, (pd.Series, pd.Index, list, tuple, int, float, bool, np.generic)):
        return Encoded([array_output(name, _as_array(prediction), column)], "np")
    raise EncodeError(f"the model returned a {type(prediction).__name__}, which has no V2 form")


def string_output(name: str, values: list[str], column: bool = False) -> Tensor:
    data = np.empty(len(values), dtype=object)
    data[:] = [_text(v) for v in values]
    shape = [len(values), 1] if column else [len(values)]
    return Tensor(name, "BYTES", shape, data, {"content_type": "str"})


def array_output(name: str, array: np.ndarray, column: bool = False) -> Tensor:
    datatype = datatype_of(array.dtype)
    if array.ndim == 0:
        shape = [1]
    elif column and array.ndim == 1:
        shape = [array.shape[0], 1]
    else:
        shape = list(array.shape)
    flat = array.reshape(-1)
    data = _bytes_values(flat) if datatype == "BYTES" else flat
    return Tensor(name, datatype, shape, data, {"content_type": "np"})


def column_output(name: str, column: pd.Series) -> Tensor:
    """One DataFrame column (MLServer's ``PandasCodec``): numbers as they are, strings as ``str``, anything
    else in an object column as one JSON document per row (``pd_json``)."""
    datatype = datatype_of(column.dtype)
    shape = [len(column), 1]
    if datatype != "BYTES":
        if isinstance(column.dtype, np.dtype):
            return Tensor(name, datatype, shape, column.to_numpy())
        # a pandas extension dtype (nullable Int64, boolean, Float64): missing values become NaN or null
        values = [None if _is_null(v) else v for v in column.tolist()]
        if any(v is None for v in values):
            return Tensor(name, "FP64", shape, np.array([math.nan if v is None else v for v in values], "<f8"))
        return Tensor(name, datatype, shape, column.to_numpy(dtype=column.dtype.numpy_dtype))
    values = _bytes_values(column.to_numpy(dtype=object))
    data = np.empty(len(values), dtype=object)
    if all(v is None or isinstance(v, (str, bytes)) for v in values):
        data[:] = [_text(v) for v in values]
        return Tensor(name, "BYTES", shape, data, {"content_type": "str"})
    data[:] = [_json_document(v) for v in values]
    return Tensor(name, "BYTES", shape, data, {"content_type": "pd_json"})


def _bytes_values(flat: np.ndarray) -> np.ndarray:
    """Elements of a BYTES tensor: strings and bytes as they are, dates and times as ISO text, NumPy scalars as
    Python's, missing values as None."""
    if flat.dtype.kind in "Mm":
        values: list[Any] = [None if np.isnat(v) else str(v) for v in flat]
    else:
        values = [
            None if _is_null(v) else v.isoformat() if isinstance(v, _DATES) else _scalar(v) for v in flat.tolist()
        ]
    data = np.empty(len(values), dtype=object)
    data[:] = values
    return data


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA


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


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


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
