"""The mlflow backend's V2 codecs, in process: JSON requests parsed and checked (every datatype, shapes, each kind
of mistake), decoded from the model's signature the way mlserver-mlflow 1.7.1 does (pd columns, one np tensor,
named tensors, str / base64 / datetime / pd_json inputs), and predictions encoded into the outputs MLServer 1.7.1
gives (datatypes, content types; NaN as null), named and shaped as the model metadata declares them
(``output-0``, the array's own shape; columns [N, 1]). The binary extension, compression and gRPC:
test_v2_protocol.py; against real servers: test_v2_serving.py and test_v2_behaviour.py."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow_kserve_server.decode import decode
from mlflow_kserve_server.encode import EncodeError, encode
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.rest_codec import decode_request as parse_request
from mlflow_kserve_server.rest_codec import encode_response
from mlflow_kserve_server.signature import read_signature
from mlflow_kserve_server.tensors import InferResponse

COLUMNS = read_signature(
    ModelSignature(
        Schema([ColSpec(DataType.double, "x"), ColSpec(DataType.string, "text"), ColSpec(DataType.long, "n")]),
        Schema([ColSpec(DataType.double)]),
        ParamSchema([ParamSpec("scale", DataType.double, 1.0)]),
    )
)
ONE_TENSOR = read_signature(ModelSignature(Schema([TensorSpec(np.dtype("float32"), (-1, 3))])))
NAMED_TENSORS = read_signature(
    ModelSignature(Schema([TensorSpec(np.dtype("int64"), (-1,), "a"), TensorSpec(np.dtype("float64"), (-1, 2), "b")]))
)
NO_SIGNATURE = read_signature(None)


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def tensor(name: str, datatype: str, shape: list[int], data: Any, **parameters: Any) -> dict[str, Any]:
    t = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    return {**t, "parameters": parameters} if parameters else t


def decoded(signature: Any, *inputs: dict[str, Any], **extra: Any) -> Any:
    return decode(parse_request(body(*inputs, **extra)), signature)


def outputs(prediction: Any, declared: Any = None) -> list[dict[str, Any]]:
    """``prediction`` encoded, as the JSON response's ``outputs``."""
    response = InferResponse("m", None, "1", encode(prediction, declared).outputs)
    content, json_length = encode_response(response, None)
    assert json_length is None
    return json.loads(content)["outputs"]


# --- parsing: every datatype ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("BOOL", [True, False], np.bool_),
        ("INT8", [-128, 127], np.int8),
        ("INT16", [-32768, 32767], np.int16),
        ("INT32", [-(2**31), 2**31 - 1], np.int32),
        ("INT64", [-(2**63), 2**63 - 1], np.int64),
        ("UINT8", [0, 255], np.uint8),
        ("UINT16", [0, 65535], np.uint16),
        ("UINT32", [0, 2**32 - 1], np.uint32),
        ("UINT64", [0, 2**64 - 1], np.uint64),
        ("FP16", [0.5, -1.5], np.float16),
        ("FP32", [0.25, 3], np.float32),
        ("FP64", [0.1, 2], np.float64),
    ],
)
def test_each_numeric_datatype_decodes_to_its_numpy_dtype(datatype: str, data: list[Any], dtype: Any) -> None:
    array = decoded(NO_SIGNATURE, tensor("t", datatype, [2], data))
    assert array.dtype == np.dtype(dtype) and array.shape == (2,)
    assert array.tolist() == [dtype(v).item() for v in data]


def test_bytes_are_utf8_strings() -> None:
    array = decoded(NO_SIGNATURE, tensor("t", "BYTES", [3], ["a", "é", "日本"]))
    assert array.dtype.kind == "U" and array.tolist() == ["a", "é", "日本"]
    assert decoded(NO_SIGNATURE, tensor("t", "BYTES", [2], ["a", "b"], content_type="str")) == ["a", "b"]


def test_shape_is_applied_to_flat_or_nested_data() -> None:
    flat = decoded(NO_SIGNATURE, tensor("t", "INT32", [2, 3], [1, 2, 3, 4, 5, 6]))
    nested = decoded(NO_SIGNATURE, tensor("t", "INT32", [2, 3], [[1, 2, 3], [4, 5, 6]]))
    assert flat.shape == nested.shape == (2, 3) and flat.tolist() == nested.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_null_in_floating_point_data_is_nan() -> None:
    array = decoded(NO_SIGNATURE, tensor("t", "FP64", [2], [None, 1.5]))
    assert math.isnan(array[0]) and array[1] == 1.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": {}}', "non-empty list"),
        (b'{"id": 3, "inputs": [{"name": "t", "shape": [1], "datatype": "FP64", "data": [1]}]}', "'id' must be"),
        (body({"shape": [1], "datatype": "FP64", "data": [1]}), "needs a 'name'"),
        (body(tensor("t", "FP64", [-1], [1])), "non-negative integers"),
        (body(tensor("t", "FP99", [1], [1])), "unknown datatype 'FP99'"),
        (body({"name": "t", "shape": [1], "datatype": "FP64"}), "has no 'data'"),
        (body(tensor("t", "FP64", [3], [1, 2])), "has 2 elements but shape [3] needs 3"),
        (body(tensor("t", "FP64", [2, 2], [[1, 2], [3]])), "ragged"),
        (body(tensor("t", "FP64", [1], ["abc"])), "FP64 data must be numbers; found 'abc'"),
        (body(tensor("t", "FP32", [1], [True])), "FP32 data must be numbers; found True"),
        (body(tensor("t", "INT32", [2], [1, 2.5])), "INT32 data must be integers"),
        (body(tensor("t", "INT8", [1], [300])), "INT8 data out of range"),
        (body(tensor("t", "UINT8", [1], [-1])), "UINT8 data out of range"),
        (body(tensor("t", "BOOL", [1], [1])), "BOOL data must be true or false; found 1"),
        (body(tensor("t", "BYTES", [1], [5])), "BYTES data must be strings; found 5"),
        (body(tensor("t", "FP64", [1], [1]), tensor("t", "FP64", [1], [2])), "repeated: t"),
        (body(tensor("t", "FP64", [1], [1]), parameters=[1]), "'parameters' must be an object"),
        (body(tensor("t", "FP64", [1], [1]), parameters={"binary_data_output": "yes"}), "must be true or false"),
        (body(tensor("t", "FP64", [1], [1]), outputs={"name": "y"}), "'outputs' must be a list"),
        (body(tensor("t", "FP64", [1], [1]), outputs=[{"name": "y"}, {"name": "y"}]), "repeated: y"),
        (body(tensor("t", "FP64", [1], [1]), outputs=[{}]), "outputs[0] needs a 'name'"),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_mistake(raw: bytes, message: str) -> None:
    with pytest.raises(V2Error) as error:
        parse_request(raw)
    assert error.value.status == 400 and message in error.value.message


def test_request_parameters_other_than_the_protocols_go_to_the_model() -> None:
    request = parse_request(body(tensor("t", "FP64", [1], [1]), parameters={"content_type": "np", "scale": 2}))
    assert request.model_params() == {"scale": 2}
    assert parse_request(body(tensor("t", "FP64", [1], [1]), parameters={"headers": {}})).model_params() is None
    binary = {"binary_data_output": True, "scale": 1}
    assert parse_request(body(tensor("t", "FP64", [1], [1]), parameters=binary)).model_params() == {"scale": 1}


# --- decoding from the signature --------------------------------------------------------------------------------


def test_named_columns_become_a_dataframe_typed_by_each_inputs_datatype() -> None:
    frame = decoded(
        COLUMNS,
        tensor("x", "FP64", [2], [1.5, 2.5]),
        tensor("text", "BYTES", [2], ["a", "b"]),
        tensor("n", "INT64", [2, 1], [1, 2]),
    )
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["x", "text", "n"]
    assert frame["x"].dtype == np.float64 and frame["n"].dtype == np.int64
    assert frame["text"].tolist() == ["a", "b"]


def test_kserve_request_shape_one_input_per_column_with_content_type_pd() -> None:
    frame = decoded(
        NO_SIGNATURE,
        tensor("fixed acidity", "FP32", [1], [7.4]),
        tensor("alcohol", "FP32", [1], [9.4]),
        parameters={"content_type": "pd"},
    )
    assert list(frame.columns) == ["fixed acidity", "alcohol"] and frame["alcohol"].dtype == np.float32


def test_one_unnamed_tensor_becomes_an_array_of_its_shape() -> None:
    array = decoded(ONE_TENSOR, tensor("input-0", "FP32", [2, 3], list(range(6))))
    assert array.shape == (2, 3) and array.dtype == np.float32


def test_named_tensors_become_a_dict_of_arrays() -> None:
    value = decoded(NAMED_TENSORS, tensor("a", "INT64", [2], [1, 2]), tensor("b", "FP64", [1, 2], [0.5, 1]))
    assert set(value) == {"a", "b"} and value["b"].shape == (1, 2) and value["a"].dtype == np.int64


def test_base64_datetime_and_pd_json_inputs() -> None:
    frame = decoded(
        NO_SIGNATURE,
        tensor("blob", "BYTES", [2], ["aGk=", "not base64!"], content_type="base64"),
        tensor("when", "BYTES", [2], ["2024-01-02T03:04:05", "2024-02-01"], content_type="datetime"),
        tensor("doc", "BYTES", [2], ['{"a": [1, 2]}', "null"], content_type="pd_json"),
        parameters={"content_type": "pd"},
    )
    assert frame["blob"].tolist() == [b"hi", b"not base64!"]
    assert frame["when"].tolist()[0] == datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert frame["doc"].tolist()[0] == {"a": [1, 2]} and frame["doc"].tolist()[1] is None


@pytest.mark.parametrize(
    ("signature", "inputs", "extra", "message"),
    [
        (COLUMNS, [tensor("x", "FP64", [1], [1]), tensor("y", "FP64", [1], [1])], {}, "unknown input 'y'"),
        (ONE_TENSOR, [tensor("a", "FP32", [1], [1]), tensor("b", "FP32", [1], [1])], {}, "takes exactly one input"),
        (COLUMNS, [tensor("x", "FP64", [2, 2], [1, 2, 3, 4])], {}, "a column needs shape [N] or [N, 1]"),
        (COLUMNS, [tensor("x", "FP64", [2], [1, 2]), tensor("n", "INT64", [1], [1])], {}, "same length"),
        (COLUMNS, [tensor("x", "FP64", [1], [1])], {"parameters": {"content_type": "xml"}}, "unknown request"),
        (COLUMNS, [tensor("x", "FP64", [1], [1], content_type="str")], {}, "needs datatype BYTES"),
        (NO_SIGNATURE, [tensor("x", "FP64", [1], [1], content_type="nope")], {}, "unknown content_type 'nope'"),
        (COLUMNS, [tensor("x", "BYTES", [1], ["1.5"])], {}, "datatype BYTES, but the model's signature says this "
         "column is FP64"),
        (NO_SIGNATURE, [tensor("d", "BYTES", [1], ["{"], content_type="pd_json")],
         {"parameters": {"content_type": "pd"}}, "not a JSON document"),
        (NO_SIGNATURE, [tensor("d", "BYTES", [1], ["x"], content_type="datetime")], {}, "not an ISO 8601"),
    ],
)  # fmt: skip
def test_a_request_the_signature_cannot_take_is_a_400(
    signature: Any, inputs: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(V2Error) as error:
        decoded(signature, *inputs, **extra)
    assert error.value.status == 400 and message in error.value.message


def test_the_signature_as_v2_metadata_like_mlserver_mlflow() -> None:
    assert [(t.name, t.datatype, t.shape, t.content_type) for t in COLUMNS.inputs] == [
        ("x", "FP64", [-1, 1], "np"),
        ("text", "BYTES", [-1, 1], "str"),
        ("n", "INT64", [-1, 1], "np"),
    ]
    assert [(t.name, t.datatype, t.shape) for t in COLUMNS.outputs] == [("output-0", "FP64", [-1, 1])]
    assert [(t.name, t.datatype, t.shape) for t in ONE_TENSOR.inputs] == [("input-0", "FP32", [-1, 3])]
    assert (COLUMNS.content_type, ONE_TENSOR.content_type, NAMED_TENSORS.content_type) == ("pd", "np", "dict")
    assert NO_SIGNATURE.inputs is None and NO_SIGNATURE.content_type is None


# --- encoding: MLServer's outputs, named and shaped as the metadata says ----------------------------------------


def np_output(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"content_type": "np"}, "data": data}


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [("bool", "BOOL"), ("int8", "INT8"), ("int16", "INT16"), ("int32", "INT32"), ("int64", "INT64"),
     ("uint8", "UINT8"), ("uint16", "UINT16"), ("uint32", "UINT32"), ("uint64", "UINT64"),
     ("float16", "FP16"), ("float32", "FP32"), ("float64", "FP64")],
)  # fmt: skip
def test_an_array_is_one_output_with_its_datatype_and_its_own_shape(dtype: str, datatype: str) -> None:
    array = np.array([1, 0, 1], dtype=dtype)
    assert encode(array).content_type == "np"
    assert outputs(array) == [np_output("output-0", datatype, [3], array.tolist())]


def test_the_single_output_takes_the_signatures_name_and_a_columns_shape() -> None:
    """What the metadata declares: an unnamed tensor ``output-0`` of its own shape; a column [N, 1]."""
    tensor_output = read_signature(
        ModelSignature(Schema([ColSpec("double")]), Schema([TensorSpec(np.dtype("float64"), (-1,))]))
    )
    assert [(t.name, t.shape) for t in tensor_output.outputs] == [("output-0", [-1])]
    assert outputs(np.array([1.5, 2.5]), tensor_output.outputs) == [np_output("output-0", "FP64", [2], [1.5, 2.5])]
    assert [(t.name, t.shape) for t in COLUMNS.outputs] == [("output-0", [-1, 1])]
    assert outputs(np.array([1.5, 2.5]), COLUMNS.outputs) == [np_output("output-0", "FP64", [2, 1], [1.5, 2.5])]
    named = read_signature(ModelSignature(Schema([ColSpec("double")]), Schema([ColSpec("long", "label")])))
    assert outputs(np.array([1, 0]), named.outputs) == [np_output("label", "INT64", [2, 1], [1, 0])]
    assert outputs(["a"], named.outputs)[0]["name"] == "label"


def test_array_shapes_nan_infinity_and_strings() -> None:
    assert outputs(np.arange(6).reshape(2, 3))[0]["shape"] == [2, 3]
    assert outputs(np.float64(2.5)) == [np_output("output-0", "FP64", [1], [2.5])]
    assert outputs(np.array([np.nan, np.inf, 1.0]))[0]["data"] == [None, None, 1.0]
    assert outputs(np.array(["a", "bé"])) == [np_output("output-0", "BYTES", [2], ["a", "bé"])]
    assert outputs(np.array([b"x", "y"], dtype=object))[0]["data"] == ["x", "y"]


def test_a_dataframe_is_one_output_per_column() -> None:
    frame = pd.DataFrame(
        {"y": [1.5, np.nan], "n": np.array([1, 2], dtype=np.int32), "s": ["a", "b"], "o": [{"k": 1}, [1, 2]]}
    )
    assert encode(frame).content_type == "pd"
    assert outputs(frame) == [
        {"name": "y", "shape": [2, 1], "datatype": "FP64", "data": [1.5, None]},
        {"name": "n", "shape": [2, 1], "datatype": "INT32", "data": [1, 2]},
        {"name": "s", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["a", "b"]},
        {"name": "o", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "pd_json"},
         "data": ['{"k":1}', "[1,2]"]},
    ]  # fmt: skip
    assert outputs(pd.DataFrame([[1.0, 2.0]]))[1]["name"] == "1", "column names are strings"


def test_pandas_string_and_nullable_columns() -> None:
    """pandas 3's default str dtype (MLServer 1.7.1: 500 KeyError 'O'), and nullable integers with a gap."""
    frame = pd.DataFrame({"s": pd.Series(["a", None], dtype="string"), "i": pd.array([1, None], dtype="Int64")})
    answer = outputs(frame)
    assert answer[0] == {"name": "s", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"},
                         "data": ["a", None]}  # fmt: skip
    assert answer[1]["datatype"] == "FP64" and answer[1]["data"] == [1.0, None], "a gap: NaN, which JSON writes null"
    assert outputs(pd.DataFrame({"i": pd.array([1, 2], dtype="Int64")}))[0]["datatype"] == "INT64"


def test_a_dict_of_arrays_is_one_output_per_key() -> None:
    assert encode({"a": np.array([1, 2])}).content_type == "dict"
    assert outputs({"a": np.array([1, 2]), "b": np.array([["x"], ["y"]])}) == [
        np_output("a", "INT64", [2], [1, 2]),
        np_output("b", "BYTES", [2, 1], ["x", "y"]),
    ]


def test_a_list_of_strings_is_one_bytes_output() -> None:
    str_output = {"name": "output-0", "shape": [2], "datatype": "BYTES", "parameters": {"content_type": "str"}}
    assert outputs(["a", "b"]) == [{**str_output, "data": ["a", "b"]}]
    assert encode(["a", "b"]).content_type == "str"
    assert outputs([])[0]["shape"] == [0]


def test_what_mlserver_cannot_encode_gets_the_nearest_form() -> None:
    """MLServer 1.7.1 answers 500 for these (its fallback codec wants a dict of arrays)."""
    assert outputs(pd.Series([1.0, 2.0])) == [np_output("output-0", "FP64", [2], [1.0, 2.0])]
    assert outputs([1, 2, 3]) == [np_output("output-0", "INT64", [3], [1, 2, 3])]
    assert outputs(3.5) == [np_output("output-0", "FP64", [1], [3.5])]
    assert outputs({"a": [1.0, 2.0]}) == [np_output("a", "FP64", [2], [1.0, 2.0])]
    assert outputs("yes")[0]["data"] == ["yes"] and encode("yes").content_type == "str"
    with pytest.raises(EncodeError, match="NoneType"):
        encode(None)
    with pytest.raises(EncodeError, match="ragged"):
        encode([[1], [1, 2]])
    with pytest.raises(EncodeError, match="complex128"):
        encode(np.array([1j]))
