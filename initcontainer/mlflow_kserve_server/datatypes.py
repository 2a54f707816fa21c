"""V2 tensor datatypes and their NumPy dtypes (little-endian, as the binary tensor data extension sends them:
Triton ``docs/protocol/extension_binary_data.md``, "Tensor data represented as binary data is organized in
little-endian byte order, row major")."""

from __future__ import annotations

from typing import Any

import numpy as np

# V2 datatype -> the NumPy dtype of its values (BYTES: Python str or bytes objects in an object array)
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = tuple(NUMPY_DTYPES)
NUMERIC = frozenset(d for d in DATATYPES if d not in ("BOOL", "BYTES"))

_BY_NAME = {
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


class NoDatatype(Exception):
    """A dtype with no V2 datatype (e.g. complex numbers)."""


def datatype_of(dtype: Any) -> str:
    """The V2 datatype of a NumPy (or pandas) dtype; strings, objects, dates and times are BYTES."""
    name = str(dtype)
    if name in _BY_NAME:
        return _BY_NAME[name]
    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # pandas nullable Int64, Float64, boolean, ...
    if numpy_dtype is not None and str(numpy_dtype) in _BY_NAME:
        return _BY_NAME[str(numpy_dtype)]
    kind = getattr(dtype, "kind", "O")
    if kind in "OSUMmT":  # T: NumPy 2's StringDType
        return "BYTES"
    raise NoDatatype(f"values of dtype {name} have no V2 datatype")
