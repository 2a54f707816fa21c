"""JSON for the V2 bodies: orjson when the model's venv has it (the mlflow backend's optional accelerator, added
only where it resolves with the model's pins: serving_stack.toml), else the standard library. Both read the same
documents and write the same bytes' meaning: compact, UTF-8, NaN and infinities as null (V2 JSON has no NaN)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # not in the model's venv: the standard library
    orjson = None

ENGINE = "orjson" if orjson is not None else "json"


def loads(body: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
    return json.loads(body)


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes. NumPy arrays (flat, as ``values`` returns them) are written as lists."""
    if orjson is not None:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_orjson_default)
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default).encode()


def values(data: np.ndarray) -> Any:
    """A flat numeric array as the ``data`` of a JSON tensor: NaN and infinities as null."""
    if orjson is not None and data.dtype.kind in "biuf" and data.dtype.isnative and data.dtype.itemsize > 2:
        return data  # orjson writes a native-endian array itself, non-finite floats as null
    listed = data.tolist()
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        return [v if math.isfinite(v) else None for v in listed]
    return listed


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return values(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError
