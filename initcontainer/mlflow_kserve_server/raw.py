"""Tensor data as raw bytes, the form both the REST binary tensor data extension and gRPC's
``raw_input_contents`` / ``raw_output_contents`` carry (Triton ``docs/protocol/extension_binary_data.md``:
little-endian, row major, no padding; BOOL one byte, 1 or 0; BYTES each element a 4-byte little-endian unsigned
length followed by its bytes. KServe reads and writes them the same way: ``infer_type.py``
``serialize_byte_tensor`` / ``deserialize_bytes_tensor``)."""

from __future__ import annotations

import math
import struct

import numpy as np

from mlflow_kserve_server.datatypes import NUMPY_DTYPES
from mlflow_kserve_server.errors import V2Error

_LENGTH = struct.Struct("<I")


def from_raw(raw: bytes | memoryview, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """The flat array ``raw`` holds for a tensor of ``datatype`` and ``shape``; a V2Error when its size is not
    exactly that."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(raw, count, where)
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise V2Error(
            f"{where}: {len(raw)} bytes of binary data, but shape {shape} of {datatype} needs "
            f"{count * dtype.itemsize}; send {dtype.itemsize} bytes per element, little-endian, row major"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and octets.max() > 1:
            raise V2Error(f"{where}: BOOL binary data must be bytes of 0 or 1")
        return octets.astype(np.bool_)
    return np.frombuffer(raw, dtype=dtype).copy()  # writable: a model may change its input in place


def _bytes_elements(raw: bytes | memoryview, count: int, where: str) -> np.ndarray:
    view = memoryview(raw)
    elements: list[bytes] = []
    offset, size = 0, len(view)
    while offset < size:
        if offset + 4 > size:
            raise V2Error(f"{where}: BYTES binary data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise V2Error(f"{where}: a BYTES element of {length} bytes runs past the end of the binary data")
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise V2Error(f"{where}: the binary data holds {len(elements)} BYTES elements, but the shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def to_raw(data: np.ndarray, datatype: str) -> bytes:
    """A flat array of ``datatype`` as raw tensor bytes (BYTES elements: str as UTF-8, None as empty)."""
    if datatype == "BYTES":
        parts = []
        for value in data.tolist():
            item = b"" if value is None else value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    return np.ascontiguousarray(data, dtype=NUMPY_DTYPES[datatype]).tobytes()
