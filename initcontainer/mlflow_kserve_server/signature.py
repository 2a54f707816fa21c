"""What the model's MLflow signature says about V2 tensors, as mlserver-mlflow 1.7.1 reads it
(``runtimes/mlflow/mlserver_mlflow/metadata.py`` in SeldonIO/MLServer: ``to_metadata_tensors`` lines 63-81,
``_get_shape`` 55-59): each input's and output's name (its own, else ``input-<i>`` / ``output-<i>`` counted from 0),
datatype, shape (a tensor's own, ``[-1, 1]`` for a column) and codec (content type), and the request's default
content type (``pd`` for columns, ``np`` for one unnamed tensor, ``dict`` for named tensors). The model metadata
lists exactly these, and infer names and shapes its outputs by them (encode.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_kserve_server.datatypes import datatype_of

INPUT_PREFIX = "input-"
OUTPUT_PREFIX = "output-"

# MLflow column type name -> (V2 datatype, content type)
_COLUMN_TYPES = {
    "boolean": ("BOOL", "np"),
    "integer": ("INT32", "np"),
    "long": ("INT64", "np"),
    "float": ("FP32", "np"),
    "double": ("FP64", "np"),
    "string": ("BYTES", "str"),
    "binary": ("BYTES", "base64"),
    "datetime": ("BYTES", "datetime"),
}


@dataclass(frozen=True)
class Spec:
    """One input or output of the model's metadata (``/v2/models/<name>``)."""

    name: str
    datatype: str
    shape: list[int]
    content_type: str
    column: bool = False  # a column of a DataFrame (ColSpec): shape [-1, 1]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": self.shape,
            "parameters": {"content_type": self.content_type},
        }


@dataclass(frozen=True)
class ModelSignature:
    inputs: list[Spec] | None  # None: the model has no signature
    outputs: list[Spec] | None
    content_type: str | None  # the request content type the signature implies
    named_inputs: bool  # the signature names its inputs: a request input with another name is a mistake

    def input(self, name: str) -> Spec | None:
        return next((t for t in self.inputs or () if t.name == name), None)

    def output(self, name: str) -> Spec | None:
        return next((t for t in self.outputs or () if t.name == name), None)


def read_signature(signature: Any) -> ModelSignature:
    """``signature``: the loaded model's ``metadata.signature`` (an ``mlflow.models.ModelSignature`` or None)."""
    if signature is None:
        return ModelSignature(None, None, None, False)
    inputs = signature.inputs
    outputs = signature.outputs
    return ModelSignature(
        inputs=_tensors(inputs, INPUT_PREFIX),
        outputs=_tensors(outputs, OUTPUT_PREFIX),
        content_type=_request_content_type(inputs),
        named_inputs=inputs is not None and bool(inputs.has_input_names()),
    )


def _tensors(schema: Any, prefix: str) -> list[Spec] | None:
    if schema is None:
        return None
    return [_tensor(spec, f"{prefix}{i}") for i, spec in enumerate(schema.inputs)]


def _tensor(spec: Any, default_name: str) -> Spec:
    name = spec.name or default_name
    if _is_tensor_spec(spec):
        return Spec(name, datatype_of(np.dtype(spec.type)), list(spec.shape), "np")
    type_name = getattr(spec.type, "name", None)
    if type_name in _COLUMN_TYPES and not _is_composite(spec.type):
        datatype, content_type = _COLUMN_TYPES[type_name]
    else:  # Array, Object, Map, AnyType columns: JSON-encoded strings
        datatype, content_type = "BYTES", "pd_json"
    return Spec(name, datatype, [-1, 1], content_type, column=True)


def _is_tensor_spec(spec: Any) -> bool:
    from mlflow.types.schema import TensorSpec

    return isinstance(spec, TensorSpec)


def _is_composite(column_type: Any) -> bool:
    from mlflow.types import schema

    kinds = tuple(getattr(schema, k) for k in ("Array", "Object", "Map", "AnyType") if hasattr(schema, k))
    return isinstance(column_type, kinds)


def _request_content_type(schema: Any) -> str | None:
    if schema is None:
        return None
    if schema.is_tensor_spec():
        return "dict" if schema.has_input_names() else "np"
    return "pd"
